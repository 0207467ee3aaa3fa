"""Start the desktop app: the window first (Qt and the model builder, no torch), then PyTorch
and the panels that need it, imported in the background (heavy.py)."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

SIGNAL_POLL_MS = 200   # Python runs its signal handlers only when the interpreter gets control


def _install_quit_signals(app):
    """Ctrl+C (SIGINT) and SIGTERM quit the app like File › Quit. Qt's event loop is C++, so a
    Python handler runs only when Python code does: a timer hands it the interpreter a few
    times a second. Until the window exists a signal is remembered, then acted on."""
    from PySide6.QtCore import QTimer

    state = {"window": None, "pending": False}

    def handler(*_):
        if state["window"] is None:
            state["pending"] = True
        else:
            state["window"].quit_on_signal()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    timer = QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(SIGNAL_POLL_MS)
    return state


def run(path: str | None = None) -> int:
    t0 = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Denoise Studio")
    app.setOrganizationName("Denoise Studio")
    signals = _install_quit_signals(app)

    from denoise_studio.gui import heavy
    from denoise_studio.gui.main_window import MainWindow
    heavy.defer()   # the window is built without torch; what needs it comes on heavy.ready
    window = MainWindow()
    window.show()
    app.processEvents()
    t_window = time.perf_counter() - t0
    signals["window"] = window
    if signals["pending"]:   # Ctrl+C while starting: close as soon as there is a window to close
        window.quit_on_signal()
        return 0
    heavy.start()   # torch and the panels, in the background; the window stays usable meanwhile
    if path:
        open_path(window, path)

    def ready():
        window.training.prewarm()   # the first Start then trains at once (see training_session)
        window.show_message(f"Ready: window after {t_window:.2f} s, PyTorch after {time.perf_counter() - t0:.2f} s")
    heavy.when_ready(ready)
    return app.exec()


def open_path(window, path: str) -> None:
    """A spec (.json) at once; a run folder or an image once the panels are there."""
    from denoise_studio.gui import heavy
    p = Path(path)
    if p.is_dir():
        heavy.when_ready(lambda: window.training.open_run(p))
    elif p.suffix.lower() == ".json":
        window.open_spec(p)
    else:
        heavy.when_ready(lambda: window.image_pane.open_requested.emit(str(p)))
