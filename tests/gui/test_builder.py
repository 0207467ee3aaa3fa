"""The model builder, driven as a user would: clicks, editors, drops, undo, save, presets."""
import json

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QLabel, QListWidget, QSpinBox, QWidget

from denoise_studio.core.analysis import analyze
from denoise_studio.core.presets import load_preset, preset_names
from denoise_studio.format import count, shape_text
from denoise_studio.gui.block_stack import BLOCK_MIME

OBJECT_NAMES = ["MainWindow", "ModelBuilder", "BlockPalette", "BlockStack", "BlockProperties", "ModelSummary",
                "TrainingView", "ImagePane", "DeviceSelector", "StartButton", "PauseButton", "StopButton",
                "LossPlot"]


def click_palette(qtbot, w, type_name):
    palette = w.findChild(QListWidget, "BlockPalette")
    for i in range(palette.count()):
        item = palette.item(i)
        if item.data(Qt.ItemDataRole.UserRole) == type_name:
            qtbot.mouseClick(palette.viewport(), Qt.MouseButton.LeftButton,
                             pos=palette.visualItemRect(item).center())
            return
    raise AssertionError(type_name)


def set_field(w, name, value):
    props = w.findChild(QWidget, "BlockProperties")
    editor = props.findChild(QWidget, f"field_{name}")
    if isinstance(editor, QSpinBox):
        editor.setValue(value)
        editor.editingFinished.emit()
    elif name == "norm":
        editor.set_value(value)
        editor.kind.activated.emit(0)
    elif hasattr(editor, "setChecked"):
        editor.setChecked(value)
    else:
        editor.setCurrentText(value)
        editor.activated.emit(editor.currentIndex())


def test_every_main_widget_has_its_object_name(window):
    for name in OBJECT_NAMES:
        found = window if window.objectName() == name else window.findChild(QWidget, name)
        assert found is not None, name
        assert found.accessibleName(), name


def test_rebuild_the_tutorial_network_by_clicking_then_fix_and_save(window, qtbot, tmp_path):
    window.new_spec()
    for t in ("conv", "conv", "down", "up", "conv", "conv"):
        click_palette(qtbot, window, t)
    doc = window.doc
    assert [b["type"] for b in doc.spec.blocks] == ["conv", "conv", "down", "up", "conv", "conv"]
    edits = {0: [("out_channels", 64)], 1: [("out_channels", 128)], 2: [("mode", "maxpool")],
             3: [("conv", False)], 4: [("out_channels", 64)], 5: [("out_channels", 3)]}
    for i, fields in edits.items():
        doc.select(i)
        for name, value in fields:
            set_field(window, name, value)
    assert doc.spec.blocks == load_preset("seed-simple").blocks
    # the as-written network is invalid, and says why
    issues = window.findChild(QListWidget, "IssueList")
    text = "\n".join(issues.item(i).text() for i in range(issues.count()))
    assert "GroupNorm(8, 3)" in text and "PyTorch refuses" in text
    # one click fixes it
    qtbot.mouseClick(window.builder.summary.fix_button, Qt.MouseButton.LeftButton)
    assert doc.analysis.valid
    assert doc.spec.blocks == load_preset("seed-simple-fixed").blocks
    assert window.save_to(tmp_path / "mine.json")
    saved = json.loads((tmp_path / "mine.json").read_text())
    assert saved["blocks"] == load_preset("seed-simple-fixed").blocks
    assert not doc.modified and "*" not in window.windowTitle()


def test_undo_redo_restore_exactly(window, qtbot):
    window.open_preset("unet")
    doc = window.doc
    history = [doc.spec.to_dict()]
    doc.select(3)
    set_field(window, "out_channels", 48)
    history.append(doc.spec.to_dict())
    doc.add_block("attention", 4)
    history.append(doc.spec.to_dict())
    doc.move_block(4, 6)
    history.append(doc.spec.to_dict())
    doc.remove_block(0)
    history.append(doc.spec.to_dict())
    set_field(window, "norm", "group:4")
    history.append(doc.spec.to_dict())
    for expected in reversed(history[:-1]):
        doc.undo_stack.undo()
        assert doc.spec.to_dict() == expected
    for expected in history[1:]:
        doc.undo_stack.redo()
        assert doc.spec.to_dict() == expected


def test_numbers_shown_equal_cores(window):
    window.open_preset("unet")
    window.builder.summary.size.setValue(128)
    a = analyze(load_preset("unet"), 128)
    stack = window.builder.stack
    for i, report in enumerate(a.blocks):
        info = stack.item(i).data(Qt.ItemDataRole.UserRole + 1)
        assert info["shape"] == shape_text(report.output_shape)
        assert info["params"] == count(report.params)
    totals = window.findChild(QLabel, "ModelTotals").text()
    assert f"{a.total_params:,}" in totals and "128×128" in totals


def test_every_preset_loads_and_seed_simple_explains_itself(window):
    for name in preset_names():
        window.open_preset(name)
        assert window.doc.spec.name == name
        assert window.builder.stack.count() == len(load_preset(name).blocks)
    window.open_preset("seed-simple")
    row = window.builder.stack.item(5)
    assert "GroupNorm(8, 3)" in row.data(Qt.ItemDataRole.UserRole + 2)
    assert row.data(Qt.ItemDataRole.UserRole + 1)["level"] == "error"


def test_drop_a_palette_block_into_the_stack_and_reorder(window, qtbot):
    window.open_preset("seed-simple-fixed")
    stack = window.builder.stack
    mime = QMimeData()
    mime.setData(BLOCK_MIME, b"residual")
    target = stack.visualItemRect(stack.item(1)).center() + QPoint(0, 6)   # lower half of row 1
    try:
        ev = QDropEvent(QPointF(target), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                        Qt.KeyboardModifier.NoModifier)
    except TypeError:
        ev = QDropEvent(target, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                        Qt.KeyboardModifier.NoModifier)
    stack.dropEvent(ev)
    assert [b["type"] for b in window.doc.spec.blocks][:3] == ["conv", "conv", "residual"]
    assert window.doc.selected == 2
    stack.setFocus()
    qtbot.keyClick(stack, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert window.doc.spec.blocks[1]["type"] == "residual"
    qtbot.keyClick(stack, Qt.Key.Key_Delete)
    assert "residual" not in [b["type"] for b in window.doc.spec.blocks]


def test_view_as_pytorch_and_open_errors_do_not_kill_the_window(window, tmp_path):
    window.open_preset("unet")
    window.show_code()
    code = window.code_view.text.toPlainText()
    assert "class ResidualBlock" in code and "def build_model" in code and "SelfAttention(channels=128" in code
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert not window.open_spec(bad)
    assert "not valid JSON" in window.statusBar().currentMessage()
    assert window.doc.spec.name == "unet"   # nothing lost


def test_settings_remember_geometry_and_last_file(window, qtbot, tmp_path):
    from denoise_studio.gui.main_window import MainWindow
    window.open_preset("dncnn")
    window.save_to(tmp_path / "d.json")
    window.training_dock.hide()   # a layout change to remember
    window.close()
    again = MainWindow()
    again.ask_before_close = False
    qtbot.addWidget(again)
    assert again.doc.path == tmp_path / "d.json" and again.doc.spec.name == "dncnn"
    assert not again.training_dock.isVisibleTo(again) and again.builder_dock.isVisibleTo(again)
    assert again.recent_menu.actions()[0].text() == str(tmp_path / "d.json")


def test_autosave_offers_to_restore_after_a_crash(window, qtbot, tmp_path, monkeypatch):
    from denoise_studio.gui.main_window import MainWindow
    window.open_preset("dncnn")
    window.doc.select(3)
    set_field(window, "out_channels", 48)
    window.autosave()                        # what the 1 s timer does after an edit
    edited = window.doc.spec.to_dict()
    assert window.autosave_path().is_file()
    # a crash: the window never closes; a new one starts
    again = MainWindow()
    again.ask_before_close = False
    qtbot.addWidget(again)
    assert not again.recovery_bar.isHidden() and "dncnn" in again.recovery_label.text()
    again.restore_autosave()
    assert again.doc.spec.to_dict() == edited and again.doc.modified
    again.close()
    assert not again.autosave_path().exists()   # a clean exit leaves nothing to recover


def test_discarding_the_recovered_network(window, qtbot):
    from denoise_studio.gui.main_window import MainWindow
    window.doc.add_block("conv", 0)
    window.autosave()
    again = MainWindow()
    again.ask_before_close = False
    qtbot.addWidget(again)
    again.discard_autosave()
    assert again.recovery_bar.isHidden() and not again.autosave_path().exists()
