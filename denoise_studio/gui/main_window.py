"""The main window: model builder (left), image pane and Sample view as tabs (centre), training
view (bottom).

The window and its builder need no torch. The image pane, Sample view and training view do:
they are built by `_build_panels` once torch is ready (heavy.when_ready: at once when it is
already imported), and until then `heavy.Placeholder`s stand in their places, with the actions
that need them disabled. Their attributes (image_pane, sample_view, training) are None until then.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QFont, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
)

from denoise_studio import __version__
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.fileio import atomic_write_text
from denoise_studio.core.presets import load_preset, preset_names
from denoise_studio.core.spec import ArchitectureSpec, load_spec_file, spec_from_dict
from denoise_studio.format import count
from denoise_studio.gui import heavy
from denoise_studio.gui.document import SpecDocument
from denoise_studio.gui.model_builder import ModelBuilder

if TYPE_CHECKING:
    from denoise_studio.gui.image_pane import ImagePane
    from denoise_studio.gui.sample_view import SampleView
    from denoise_studio.gui.training_view import TrainingView

DEFAULT_PRESET = "unet-small"   # the recommended network (bench/quality.py)
MAX_RECENT = 8
AUTOSAVE_MS = 1000
# First launch, until the user moves a dock's edge: the builder gets this share of the width and
# the training dock this share of the height (within bounds), so the pictures stay large at
# 1280×800 as at 1920×1200.
BUILDER_WIDTH = (0.34, 380, 560)
TRAINING_HEIGHT = (0.32, 230, 340)


def share(total: int, rule: tuple[float, int, int]) -> int:
    fraction, lo, hi = rule
    return max(lo, min(hi, int(fraction * total)))


def settings() -> QSettings:
    """The user's settings; tests point DENOISE_STUDIO_SETTINGS at a throwaway .ini file."""
    path = os.environ.get("DENOISE_STUDIO_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("Denoise Studio", "Denoise Studio")


class CodeView(QDialog):
    """The generated PyTorch code of the network, read-only and selectable."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("CodeView")
        self.setWindowTitle("Network as PyTorch")
        self.resize(820, 700)
        lay = QVBoxLayout(self)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        font = QFont("Monospace")
        font.setStyleHint(QFont.StyleHint.TypeWriter)
        self.text.setFont(font)
        lay.addWidget(self.text)

    def show_spec(self, spec: ArchitectureSpec) -> None:
        from denoise_studio.core.network import network_code  # torch: the action waits for it
        try:
            self.text.setPlainText(network_code(spec))
        except DenoiseError as e:
            self.text.setPlainText(f"# This network cannot be built yet:\n# {e}\n")


class MainWindow(QMainWindow):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("MainWindow")
        self.setAccessibleName("Denoise Studio")
        self.ask_before_close = True
        self.doc = SpecDocument(parent=self)
        self.builder = ModelBuilder(self.doc)
        # the panels that need torch: placeholders until _build_panels
        self.image_pane: ImagePane | None = None
        self.sample_view: SampleView | None = None
        self.training: TrainingView | None = None
        self.code_view: CodeView | None = None
        self.centre = QTabWidget()
        self.centre.setObjectName("CentreTabs")
        self.centre.setDocumentMode(True)
        self.centre.addTab(heavy.Placeholder("The Denoise view"), "")
        self.centre.addTab(heavy.Placeholder("The Sample view"), "")
        self._name_tabs()
        self.setCentralWidget(self.centre)
        self.builder_dock = self._dock("Model builder", "ModelBuilderDock", self.builder,
                                       Qt.DockWidgetArea.LeftDockWidgetArea)
        self.training_dock = self._dock("Training", "TrainingDock", heavy.Placeholder("The training panel"),
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.status = QLabel()
        self.statusBar().addPermanentWidget(self.status)
        self._menus()
        self.setAcceptDrops(True)
        self._model_cache: tuple | None = None
        self._sample_cache: tuple | None = None
        self.doc.changed.connect(self._update_status)
        self.doc.undo_stack.cleanChanged.connect(self._clean_changed)
        self.doc.path_changed.connect(self._update_title)
        self.resize(1500, 950)
        self._restore_settings()
        if not self.doc.spec.blocks:
            self.doc.load(load_preset(DEFAULT_PRESET))
        self._update_title()
        self._update_status()
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        self.doc.changed.connect(self._autosave_timer.start)
        self.recovery_bar = QToolBar("Recovery", self)
        self.recovery_bar.setObjectName("RecoveryBar")
        self.recovery_label = QLabel()
        self.recovery_bar.addWidget(self.recovery_label)
        self.recovery_bar.addAction("Restore", self.restore_autosave).setObjectName("ActionRestore")
        self.recovery_bar.addAction("Discard", self.discard_autosave).setObjectName("ActionDiscard")
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.recovery_bar)
        self.recovery_bar.hide()
        self._offer_recovery()
        heavy.when_ready(self._build_panels)

    # --- construction ---
    def _name_tabs(self) -> None:
        self.centre.setTabText(0, "Denoise")
        self.centre.setTabToolTip(0, "Denoise an image: noisy input, predicted noise and reconstruction")
        self.centre.setTabText(1, "Sample")
        self.centre.setTabToolTip(1, "Generate images from pure noise with a DDPM-trained network")

    def _build_panels(self) -> None:
        """Torch is ready: the image pane, Sample view and training view replace their placeholders."""
        from denoise_studio.gui.image_pane import ImagePane
        from denoise_studio.gui.sample_view import SampleView
        from denoise_studio.gui.training_view import TrainingView
        self.image_pane = ImagePane()
        self.sample_view = SampleView()
        self.training = TrainingView(self.doc)
        current = self.centre.currentIndex()
        for i, panel in enumerate((self.image_pane, self.sample_view)):
            placeholder = self.centre.widget(i)
            self.centre.removeTab(i)
            self.centre.insertTab(i, panel, "")
            placeholder.deleteLater()
        self._name_tabs()
        self.centre.setCurrentIndex(current)
        self.training_dock.widget().deleteLater()
        self.training_dock.setWidget(self.training)
        self.image_pane.model_provider = self.current_model
        self.image_pane.noisy_model_provider = self.self_supervised_model
        self.image_pane.status.connect(self.show_message)
        self.sample_view.model_provider = self.newest_model
        self.sample_view.status.connect(self.show_message)
        self.training.preview.connect(self._show_preview)
        self.training.preset_requested.connect(self.open_preset)
        self.training.objective_changed.connect(self.builder.summary.set_objective)
        self.doc.selection_changed.connect(self.image_pane.set_selected_block)
        if self.doc.selected >= 0:
            self.image_pane.set_selected_block(self.doc.selected)
        self.training.checkpoint_saved.connect(self._new_checkpoint)
        for action in self._panel_actions:
            action.setEnabled(True)
        self.open_run_action.triggered.connect(self.training.open_run_dialog)

    def _dock(self, title, name, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text, slot, shortcut=None, name=None, needs_panels=False) -> QAction:
        """A menu action; needs_panels: disabled until _build_panels (it needs torch)."""
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        if name:
            a.setObjectName(name)
        if slot is not None:
            a.triggered.connect(slot)
        if needs_panels:
            a.setEnabled(False)
            self._panel_actions.append(a)
        menu.addAction(a)
        return a

    def _menus(self) -> None:
        bar = self.menuBar()
        self._panel_actions: list[QAction] = []
        f = bar.addMenu("&File")
        self._action(f, "&New network", self.new_spec, QKeySequence.StandardKey.New, "ActionNew")
        self._action(f, "&Open network…", self.open_spec_dialog, QKeySequence.StandardKey.Open, "ActionOpen")
        self.recent_menu = f.addMenu("Open &recent")
        self._action(f, "&Save network", self.save, QKeySequence.StandardKey.Save, "ActionSave")
        self._action(f, "Save network &as…", self.save_as, QKeySequence.StandardKey.SaveAs, "ActionSaveAs")
        f.addSeparator()
        self._action(f, "Open &image…", self.open_image_dialog, "Ctrl+I", "ActionOpenImage", needs_panels=True)
        self.open_run_action = self._action(f, "Open r&un…", None, "Ctrl+Shift+O", "ActionOpenRun", needs_panels=True)
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit, "ActionQuit")

        e = bar.addMenu("&Edit")
        undo = self.doc.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        undo.setObjectName("ActionUndo")
        redo = self.doc.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence.StandardKey.Redo, QKeySequence("Ctrl+Y")])
        redo.setObjectName("ActionRedo")
        e.addAction(undo)
        e.addAction(redo)
        e.addSeparator()
        self._action(e, "&Duplicate block", self.builder.duplicate_selected, "Ctrl+D", "ActionDuplicate")
        self._action(e, "Move block &up", lambda: self.builder.move_selected(-1), "Ctrl+Up")
        self._action(e, "Move block do&wn", lambda: self.builder.move_selected(+1), "Ctrl+Down")
        self._action(e, "&Fix first problem", self.builder.summary.fix_selected, "Ctrl+Shift+F", "ActionFix")

        p = bar.addMenu("&Presets")
        for name in preset_names():
            a = self._action(p, name, (lambda n: lambda: self.open_preset(n))(name))
            a.setToolTip(load_preset(name).description)
        p.setToolTipsVisible(True)

        v = bar.addMenu("&View")
        self._action(v, "&Denoise", lambda: self.centre.setCurrentIndex(0), "Ctrl+1", "ActionViewDenoise")
        self._action(v, "&Sample", lambda: self.centre.setCurrentIndex(1), "Ctrl+2", "ActionViewSample")
        v.addSeparator()
        self._action(v, "Network as &PyTorch…", self.show_code, "Ctrl+Shift+P", "ActionViewCode", needs_panels=True)
        v.addSeparator()
        v.addAction(self.builder_dock.toggleViewAction())
        v.addAction(self.training_dock.toggleViewAction())

        h = bar.addMenu("&Help")
        self._action(h, "&About Denoise Studio", self.about)

    # --- files ---
    def confirm_discard(self) -> bool:
        if not self.doc.modified or not self.ask_before_close:
            return True
        answer = QMessageBox.question(self, "Unsaved network", f"Save the changes to {self.doc.spec.name}?",
                                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                                      | QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def new_spec(self) -> None:
        if self.confirm_discard():
            self.doc.load(ArchitectureSpec(name="untitled"))

    def open_preset(self, name: str) -> None:
        if self.confirm_discard():
            self.doc.load(load_preset(name))
            a = self.doc.analysis
            if a is None:   # torch is loading: the builder fills in the analysis when it is ready
                self.show_message(f"Preset {name}")
                return
            self.show_message(f"Preset {name}: " + ("valid" if a.valid else f"{len(a.errors)} problem(s) — "
                                                    "see the problems list for why and a one-click fix"))

    def open_spec_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open network", self._last_dir(), "Networks (*.json)")
        if path:
            self.open_spec(path)

    def open_spec(self, path) -> bool:
        if not self.confirm_discard():
            return False
        try:
            spec = load_spec_file(path)
        except DenoiseError as e:
            self.show_error(str(e))
            return False
        self.doc.load(spec, Path(path))
        self._add_recent(path)
        return True

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self.save_to(self.doc.path)

    def save_as(self) -> bool:
        start = str(Path(self._last_dir()) / f"{self.doc.spec.name}.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save network", start, "Networks (*.json)")
        return self.save_to(Path(path)) if path else False

    def save_to(self, path) -> bool:
        path = Path(path)
        try:
            self.doc.spec.save(path)
        except OSError as e:
            self.show_error(f"Could not save {path}: {e.strerror or e}.")
            return False
        self.doc.mark_saved(path)
        self._add_recent(path)
        self.show_message(f"Saved {path}")
        return True

    def _last_dir(self) -> str:
        return str(settings().value("last_dir", str(Path.home())))

    def _add_recent(self, path) -> None:
        s = settings()
        recent = [p for p in (s.value("recent") or []) if p != str(path)]
        recent = [str(path), *recent][:MAX_RECENT]
        s.setValue("recent", recent)
        s.setValue("last_dir", str(Path(path).parent))
        self._fill_recent(recent)

    def _fill_recent(self, recent) -> None:
        self.recent_menu.clear()
        for p in recent:
            self.recent_menu.addAction(p, functools.partial(self.open_spec, p))
        self.recent_menu.setEnabled(bool(recent))

    # --- autosave: the network being edited survives a crash ---
    def autosave_path(self) -> Path:
        return Path(settings().fileName()).with_name("autosave.json")

    def autosave(self) -> None:
        path = self.autosave_path()
        try:
            if self.doc.modified:
                atomic_write_text(path, json.dumps({"spec": self.doc.spec.to_dict(),
                                                    "path": str(self.doc.path) if self.doc.path else None}))
            elif path.exists():
                path.unlink()
        except OSError as e:
            self.show_message(f"Autosave failed: {e.strerror or e}")

    def _offer_recovery(self) -> None:
        path = self.autosave_path()
        try:
            data = json.loads(path.read_text())
            self._recovered = (spec_from_dict(data["spec"]), data.get("path"))
        except (OSError, ValueError, KeyError, TypeError, DenoiseError):
            self._recovered = None
            return
        self.recovery_label.setText(f"  Unsaved network “{self._recovered[0].name}” recovered after an unexpected "
                                    "exit.  ")
        self.recovery_bar.show()

    def restore_autosave(self) -> None:
        if self._recovered is not None:
            spec, path = self._recovered
            self.doc.load(spec, Path(path) if path else None)
            self.doc.undo_stack.resetClean()   # restored work is unsaved work
            self._update_title()
        self._recovered = None
        self.recovery_bar.hide()

    def discard_autosave(self) -> None:
        self._recovered = None
        self.recovery_bar.hide()
        self.autosave_path().unlink(missing_ok=True)

    # --- the current network, for the image pane ---
    def current_model(self):
        """The current run's best checkpoint (else last); until a run has one, the pretrained
        network shipped with the app. Loaded once per file version; None if there is none."""
        from denoise_studio.core import presets
        from denoise_studio.core.inference import load_model
        run = self.training.current_run
        candidates = [Path(run) / "checkpoints" / f"{n}.safetensors" for n in ("best", "last")] if run else []
        # The shipped file by path, not the name "pretrained": a folder of that name in the
        # working directory must not replace it here.
        for path in [*candidates, presets.pretrained_path()]:
            if path.is_file():
                key = (str(path), path.stat().st_mtime_ns)
                if self._model_cache is None or self._model_cache[0] != key:
                    try:
                        self._model_cache = (key, load_model(path, "cpu"))
                    except DenoiseError as e:
                        self.show_message(str(e))
                        return None
                return self._model_cache[1]
        return None

    def newest_model(self):
        """For sampling: the current run's newest checkpoint (last, so that it follows a run while it
        trains; best if there is no last), reloaded when the file changes; until a run has one, the
        shipped pretrained network (trained on Gaussian noise: the Sample view then says what to
        train instead). None if there is none."""
        from denoise_studio.core import presets
        from denoise_studio.core.inference import load_model
        run = self.training.current_run
        candidates = [Path(run) / "checkpoints" / f"{n}.safetensors" for n in ("last", "best")] if run else []
        for path in [*candidates, presets.pretrained_path()]:
            try:
                key = (str(path), path.stat().st_mtime_ns)
            except OSError:
                continue
            if self._sample_cache is None or self._sample_cache[0] != key:
                try:
                    self._sample_cache = (key, load_model(path, "cpu"))
                except DenoiseError as e:
                    self.show_message(str(e))
                    return None
            return self._sample_cache[1]
        return None

    def self_supervised_model(self):
        """For the image pane's "already noisy" mode: the newest run's network (newest_model) when it
        was trained self-supervised (n2v, ne2ne: on the user's own noisy images); else None."""
        if self.training.current_run is None:
            return None
        from denoise_studio.gui.image_jobs import self_supervised_objective
        model = self.newest_model()
        return model if self_supervised_objective(model) else None

    def _new_checkpoint(self, path: str) -> None:
        if self.image_pane.source is not None and not self.image_pane.busy:
            self.image_pane.rerun()

    def _show_preview(self, step: int, images: dict, psnr: float, stats: dict | None, live: bool) -> None:
        """A training preview in the image pane; a live one leaves the user's own image alone (that
        one is re-run on each checkpoint instead)."""
        if live and self.image_pane.source is not None:
            return
        clean = images.get("clean")
        metrics = {}
        if clean is not None:
            from denoise_studio.core.metrics import psnr as psnr_of
            metrics = {"noisy": f"{psnr_of(images['noisy'], clean):.2f} dB", "reconstruction": f"{psnr:.2f} dB"}
        self.image_pane.show_result(images, f"Live preview at step {step:,} on a held-out validation image "
                                    f"(σ = 25): reconstruction {psnr:.2f} dB", metrics, stats=stats)

    def open_image_dialog(self) -> None:
        self.centre.setCurrentWidget(self.image_pane)
        self.image_pane.open_image_dialog()

    # --- drag and drop ---
    def dragEnterEvent(self, e):
        if e.mimeData().hasUrls() and any(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()
        else:
            e.ignore()

    def dragMoveEvent(self, e):
        self.dragEnterEvent(e)

    def dropEvent(self, e):
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if not paths:
            e.ignore()
            return
        e.acceptProposedAction()
        if len(paths) == 1 and paths[0].lower().endswith(".json"):
            self.open_spec(paths[0])
        else:
            self.centre.setCurrentIndex(0)
            heavy.when_ready(lambda: self.image_pane.drop(paths))

    # --- views ---
    def show_code(self) -> None:
        if self.code_view is None:
            self.code_view = CodeView(self)
            self.doc.changed.connect(lambda: self.code_view.show_spec(self.doc.spec))
        self.code_view.show_spec(self.doc.spec)
        self.code_view.show()
        self.code_view.raise_()

    def about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About Denoise Studio",
                          f"<b>Denoise Studio {__version__}</b><br>A workbench for the building blocks of "
                          "diffusion models: build a noise-prediction network, train it live, and see what "
                          "noise it thinks was added.", parent=self)
        box.setObjectName("AboutBox")
        box.open()

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def show_error(self, text: str) -> None:
        """One clear line in the status bar and a non-modal box; nothing is lost."""
        self.statusBar().showMessage(text, 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, "Denoise Studio", text, parent=self)
        box.setObjectName("ErrorBox")
        box.open()

    def _clean_changed(self, clean: bool) -> None:
        # Also emitted while the undo stack is being destroyed: use the argument, not the stack.
        self._update_title(modified=not clean)

    def _update_title(self, modified: bool | None = None) -> None:
        where = f" — {self.doc.path}" if self.doc.path else ""
        star = " *" if (self.doc.modified if modified is None else modified) else ""
        self.setWindowTitle(f"{self.doc.spec.name}{star}{where} — Denoise Studio")

    def _update_status(self) -> None:
        a = self.doc.analysis
        if a is None:
            self.status.setText(heavy.LOADING_TEXT)
            self._update_title()
            return
        self.status.setText(f"{'valid' if a.valid else f'{len(a.errors)} error(s)'} · "
                            f"{count(a.total_params)} params · {count(a.total_flops)}FLOPs at {a.size}²")
        self._update_title()

    # --- settings ---
    def _restore_settings(self) -> None:
        s = settings()
        geometry, state = s.value("geometry"), s.value("window_state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray) and self.restoreState(state):
            self._dock_sizes = None   # the user's own layout
        else:   # first launch: the pictures get most of the window, at any window size
            self._dock_sizes = (-1, -1)
            QTimer.singleShot(0, self._fit_docks)
        self._fill_recent(s.value("recent") or [])
        last = s.value("last_spec")
        if last and Path(str(last)).is_file():
            try:
                self.doc.load(load_spec_file(last), Path(str(last)))
            except DenoiseError:
                pass

    _dock_sizes: tuple[int, int] | None = None   # the sizes _fit_docks gave; None once the user sized them

    def _fit_docks(self) -> None:
        """Size the docks in proportion to the window (BUILDER_WIDTH, TRAINING_HEIGHT)."""
        if self._dock_sizes is None:
            return
        w = share(self.width(), BUILDER_WIDTH)
        h = share(self.height(), TRAINING_HEIGHT)
        self.resizeDocks([self.builder_dock], [w], Qt.Orientation.Horizontal)
        self.resizeDocks([self.training_dock], [h], Qt.Orientation.Vertical)
        self._dock_sizes = (-1, -1)   # laid out at the next event: read back then
        QTimer.singleShot(0, self._note_dock_sizes)

    def _note_dock_sizes(self) -> None:
        if self._dock_sizes is not None:
            self._dock_sizes = (self.builder_dock.width(), self.training_dock.height())

    def resizeEvent(self, e) -> None:
        super().resizeEvent(e)
        if self._dock_sizes is None:
            return
        now = (self.builder_dock.width(), self.training_dock.height())
        if self._dock_sizes != (-1, -1) and any(abs(a - b) > 2 for a, b in zip(now, self._dock_sizes, strict=True)):
            self._dock_sizes = None   # the user dragged a dock's edge: theirs from now on
            return
        QTimer.singleShot(0, self._fit_docks)

    # --- closing ---
    # While a run trains, closing offers: "stop" (finish the step, save the checkpoint and a
    # finished event, then close), "background" (the training child goes on headless and can be
    # watched or reopened later) or "cancel". Setting close_choice answers without the dialog
    # (tests; Ctrl+C, which stops and keeps the checkpoint).
    close_choice: str | None = None
    quitting_on_signal = False

    def ask_close_choice(self) -> str:
        if self.close_choice is not None:
            return self.close_choice
        if not self.ask_before_close:   # no dialogs at close (tests, scripted use): the safe choice
            return "stop"
        run = self.training.current_run
        box = QMessageBox(QMessageBox.Icon.Question, "Training in progress",
                          f"A run is training (step {self.training.last_step:,}) into {run}.", parent=self)
        box.setInformativeText("Stop it and keep its checkpoint, or let it go on in the background? A run left "
                               "in the background can be followed with Open run… or `denoise-studio watch`.")
        stop = box.addButton("Stop and keep checkpoint", QMessageBox.ButtonRole.AcceptRole)
        background = box.addButton("Keep training in background", QMessageBox.ButtonRole.ActionRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(stop)
        box.setEscapeButton(cancel)
        box.exec()
        return {stop: "stop", background: "background"}.get(box.clickedButton(), "cancel")

    def quit_on_signal(self) -> None:
        """Ctrl+C or SIGTERM in the terminal: quit like File › Quit, without any dialog; a run stops
        and keeps its checkpoint, unsaved edits stay in the autosave for recovery. A second signal
        while the run is still saving kills it (every file is written atomically)."""
        if self.quitting_on_signal:
            if self.training is not None:
                self.training.kill()
            return
        self.quitting_on_signal = True
        self.close_choice = "stop"
        self.close()

    def closeEvent(self, event):
        if self.training is not None and self.training.running:
            choice = self.ask_close_choice()
            if choice == "cancel":
                event.ignore()
                return
            if choice == "background":
                pid = self.training.keep_training_in_background()
                print(f"denoise-studio: training goes on in process {pid}, writing {self.training.current_run}; "
                      f"follow it with `denoise-studio watch {self.training.current_run}`.", file=sys.stderr)
        keep_autosave = self.quitting_on_signal and self.doc.modified
        if keep_autosave:
            self.autosave()
        elif not self.confirm_discard():
            event.ignore()
            return
        if self.training is not None:
            self.training.shutdown()
        s = settings()
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        s.setValue("last_spec", str(self.doc.path) if self.doc.path else "")
        self._autosave_timer.stop()
        if not keep_autosave:
            self.autosave_path().unlink(missing_ok=True)   # a clean exit leaves nothing to recover
        event.accept()

