"""Start the desktop app: a splash within a second (Qt only), then the window once torch
and the panels have loaded."""
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
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Denoise Studio")
    app.setOrganizationName("Denoise Studio")
    splash = QLabel("Denoise Studio\n\nloading PyTorch…")
    splash.setObjectName("Splash")
    splash.setAlignment(Qt.AlignmentFlag.AlignCenter)
    splash.setWindowFlags(Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint)
    splash.setStyleSheet("background: #1f2a44; color: white; font-size: 18px; padding: 30px;")
    splash.resize(360, 160)
    screen = QGuiApplication.primaryScreen()
    if screen is not None:
        splash.move(screen.availableGeometry().center() - splash.rect().center())
    splash.show()
    app.processEvents()
    t_splash = time.perf_counter() - t0
    signals = _install_quit_signals(app)

    from denoise_studio.gui.main_window import MainWindow
    window = MainWindow()
    if path:
        open_path(window, path)
    window.show()
    splash.close()
    app.processEvents()
    signals["window"] = window
    if signals["pending"]:   # Ctrl+C while loading: close as soon as there is a window to close
        window.quit_on_signal()
        return 0
    window.training.prewarm()   # the first Start then trains at once (see training_session)
    window.show_message(f"Ready: splash after {t_splash:.2f} s, window after {time.perf_counter() - t0:.2f} s")
    return app.exec()


def open_path(window, path: str) -> None:
    """A spec (.json), a run folder, or an image."""
    p = Path(path)
    if p.is_dir():
        window.training.open_run(p)
    elif p.suffix.lower() == ".json":
        window.open_spec(p)
    else:
        window.image_pane.open_requested.emit(str(p))
