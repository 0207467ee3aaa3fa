"""Issue 18, start-up: the window and a usable model builder come without PyTorch; torch and the
panels that need it are imported in the background afterwards (denoise_studio/gui/heavy.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from denoise_studio.core.analysis import analyze
from denoise_studio.core.presets import load_preset
from denoise_studio.format import count, shape_text
from denoise_studio.gui.main_window import DEFAULT_PRESET

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: this test process has torch imported already.
CHILD = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
HEAVY = ("torch", "scipy", "skimage")
loaded = lambda: [m for m in HEAVY if m in sys.modules]
from denoise_studio.gui import heavy
from denoise_studio.gui.main_window import MainWindow
out = {"after_import": loaded()}
heavy.defer()
w = MainWindow(); w.ask_before_close = False; w.resize(1280, 800); w.show(); app.processEvents()
b, doc = w.builder, w.doc

def state():
    return {"status": w.status.text(), "totals": b.summary.totals.text(),
            "row0": b.stack.item(0).data(257), "blocks": len(doc.spec.blocks),
            "training": w.training is not None and w.training_dock.widget() is w.training,
            "training_enabled": w.training_dock.widget().isEnabled(),
            "start_enabled": w.training is not None and w.training.start_button.isEnabled(),
            "placeholder": getattr(w.training_dock.widget(), "label", None) and w.training_dock.widget().label.text(),
            "denoise_tab": w.centre.widget(0) is w.image_pane and w.centre.tabText(0),
            "open_image": w.findChild(type(w.menuBar().actions()[0]), "ActionOpenImage").isEnabled()}

out["shown"] = state()
# the builder works meanwhile: palette, add, properties editing, undo
out["palette"] = b.palette.count()
n = len(doc.spec.blocks)
b.palette.add_requested.emit("conv")
out["added"] = len(doc.spec.blocks) - n
doc.select(0)
editor = b.properties.editors["out_channels"]
editor.setValue(16); editor.editingFinished.emit()   # as typing 16 and leaving the field
out["edited"] = doc.spec.blocks[0].get("out_channels")
doc.undo_stack.undo(); doc.undo_stack.undo()
out["undone"] = (len(doc.spec.blocks) - n, doc.spec.blocks[0].get("out_channels"))
out["after_show"] = loaded()
heavy.start()
deadline = time.monotonic() + 90
while not heavy.ready_now() and time.monotonic() < deadline:
    app.processEvents(); time.sleep(0.01)
app.processEvents()
out["ready"] = heavy.ready_now()
out["after_ready"] = state()
out["after_ready_loaded"] = loaded()
w.close()
print(json.dumps(out))
"""


def test_the_window_and_builder_come_before_torch_and_the_rest_follows(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DENOISE_STUDIO_SETTINGS": str(tmp_path / "settings.ini"),
           "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", CHILD], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["after_import"] == [] and out["after_show"] == []   # nor while the builder was used

    shown = out["shown"]
    assert shown["status"] == "Loading PyTorch…"
    assert shown["totals"].startswith("Loading PyTorch…")
    assert shown["row0"]["shape"] == "…" and shown["row0"]["params"] == "…" and shown["row0"]["type"] == "conv"
    assert not shown["training"] and not shown["training_enabled"] and not shown["open_image"]
    assert shown["placeholder"].startswith("Loading PyTorch…") and shown["denoise_tab"] is False
    assert out["palette"] > 0 and out["added"] == 1 and out["edited"] == 16
    spec = load_preset(DEFAULT_PRESET)
    assert out["undone"] == [0, spec.blocks[0].get("out_channels")]

    assert out["ready"]
    analysis = analyze(spec, 64)
    params = analysis.total_params
    after = out["after_ready"]
    assert f"<b>{params:,}</b> parameters" in after["totals"]
    assert f"{count(params)} params" in after["status"]
    assert after["row0"]["shape"] == shape_text(analysis.blocks[0].output_shape)
    assert after["row0"]["params"] == count(analysis.blocks[0].params)
    assert after["training"] and after["training_enabled"] and after["start_enabled"]
    assert after["denoise_tab"] == "Denoise" and after["open_image"]
    assert "torch" in out["after_ready_loaded"] and "scipy" in out["after_ready_loaded"]


def test_without_defer_everything_is_there_at_once(window):
    """Every test, script and second window: torch-backed parts are built synchronously."""
    from denoise_studio.gui import heavy
    assert heavy.ready_now()
    assert window.training_dock.widget() is window.training and window.centre.widget(1) is window.sample_view
    assert window.doc.analysis is not None and window.builder.stack.item(0).data(257)["params"] != "…"


def test_a_broken_install_says_why_where_the_panels_would_be(qtbot, tmp_path, monkeypatch):
    from denoise_studio.gui import heavy
    from denoise_studio.gui.main_window import MainWindow
    monkeypatch.setenv("DENOISE_STUDIO_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setattr(heavy, "MODULES", ("denoise_studio.no_such_module",))
    monkeypatch.setattr(heavy, "_loader", heavy._Loader())   # as defer() does before torch is imported
    w = MainWindow()
    w.ask_before_close = False
    qtbot.addWidget(w)
    w.show()
    placeholder = w.training_dock.widget()
    assert w.training is None and not placeholder.isEnabled()
    heavy.start()
    qtbot.waitUntil(lambda: "could not be loaded" in placeholder.label.text(), timeout=10_000)
    assert "no_such_module" in placeholder.label.text() and "no_such_module" in w.centre.widget(0).label.text()
    assert w.training is None and not heavy.ready_now()
    w.builder.palette.add_requested.emit("conv")   # the builder still edits
    assert w.doc.modified


def test_a_script_that_builds_the_window_before_torch_gets_it_whole(tmp_path):
    """Without heavy.defer() (bench/soak.py and others build a MainWindow before importing torch),
    the window comes synchronously with every panel, through the deferred core.modules."""
    child = ("import sys\nfrom PySide6.QtWidgets import QApplication\napp = QApplication([])\n"
             "from denoise_studio.gui.main_window import MainWindow\nw = MainWindow(); w.show()\n"
             "print(w.training is not None and w.training_dock.widget() is w.training, "
             "w.doc.analysis.total_params, 'torch' in sys.modules)\nw.close()\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DENOISE_STUDIO_SETTINGS": str(tmp_path / "settings.ini"),
           "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", child], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    params = analyze(load_preset(DEFAULT_PRESET), 64).total_params
    assert res.stdout.split() == ["True", str(params), "True"]
