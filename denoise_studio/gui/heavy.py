"""PyTorch and the scientific stack, imported in the background so that the window shows first.

Importing torch, scipy and scikit-image takes a few seconds on a small machine. The app calls
`defer()`, builds and shows its window (the model builder works without them), then `start()`:
a Python thread imports `MODULES`, and `ready` is emitted on the GUI thread when it is done.
Code that needs them runs through `when_ready(fn)`: on `ready` when deferred, else at once —
so without `defer()` (every test, every script that builds a window, a second window, or torch
already imported) everything happens synchronously, as it always did. Until `ready` the builder
shows "…" for shapes and counts and the panels that need torch show a `Placeholder`.

The GUI is split accordingly: document, model_builder, block_stack, properties and main_window
import torch-backed core modules only inside functions that run once ready; the panel modules
(training_view, image_pane, sample_view and theirs) import them at the top and are themselves
imported only once ready.
"""
from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

# Imported by the background thread, in this order: everything the panels need.
MODULES = (
    "torch",
    "denoise_studio.core.modules",
    "denoise_studio.core.analysis",
    "denoise_studio.core.objectives",
    "denoise_studio.core.network",
    "denoise_studio.core.devices",
    "denoise_studio.core.precision",
    "denoise_studio.core.data",
    "denoise_studio.core.metrics",
    "denoise_studio.core.baselines",
    "denoise_studio.core.inference",
    "denoise_studio.core.sampling",
    "denoise_studio.core.runfolder",
)
LOADING_TEXT = "Loading PyTorch…"


class _Loader(QObject):
    ready = Signal()
    failed = Signal(str)
    _finished = Signal(str)   # from the import thread: "" when all went well, else the error

    def __init__(self):
        super().__init__()
        self.thread: threading.Thread | None = None
        self.loaded = False
        self.error = ""
        # emitted from the import thread, run on the GUI thread (where this object lives)
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)

    def _import_all(self) -> None:
        try:
            for name in MODULES:
                importlib.import_module(name)
        except Exception as e:   # a broken install: say so where the panels would be
            self._finished.emit(f"{type(e).__name__}: {e}")
            return
        self._finished.emit("")

    def _on_finished(self, error: str) -> None:
        if error:
            self.error = error
            self.failed.emit(error)
        else:
            self.loaded = True
            self.ready.emit()


_loader: _Loader | None = None   # set by defer(): the background import's state and signals


def defer() -> None:
    """From now on, what needs torch waits for the background import (`start()`) instead of
    importing it on the GUI thread. Nothing changes when torch is already imported."""
    global _loader
    if _loader is None and "torch" not in sys.modules:
        _loader = _Loader()


def start() -> None:
    """Import MODULES in a background thread (once, when deferred); `ready` follows on the GUI
    thread. Call it after the window shows: the import holds the interpreter most of the time."""
    defer()
    if _loader is not None and _loader.thread is None:
        _loader.thread = threading.Thread(target=_loader._import_all, name="import-torch", daemon=True)
        _loader.thread.start()


def ready_now() -> bool:
    """Whether torch-backed code may run now: not deferred, or the background import is done."""
    return _loader is None or _loader.loaded


def when_ready(fn: Callable[[], object]) -> None:
    """Call fn now when ready, else on the GUI thread once the background import is done (in the
    order given; a bound method of a QObject is dropped with its object)."""
    if _loader is None or _loader.loaded:
        fn()
    else:
        _loader.ready.connect(fn)


class Placeholder(QWidget):
    """Stands where a panel that needs torch will be: disabled, saying what it waits for (or
    why it never came)."""

    def __init__(self, what: str, parent=None):
        super().__init__(parent)
        self.setObjectName("LoadingPlaceholder")
        self.label = QLabel(f"{LOADING_TEXT}\n{what} will appear when it is ready.")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.label)
        self.setEnabled(False)
        if _loader is not None:
            if _loader.error:
                self.show_error(_loader.error)
            _loader.failed.connect(self.show_error)

    def show_error(self, error: str) -> None:
        self.label.setText(f"PyTorch could not be loaded, so this part of the app is unavailable:\n{error}")
        self.setEnabled(True)   # the message must be readable and selectable
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)


