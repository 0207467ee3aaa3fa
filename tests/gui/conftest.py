import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from denoise_studio.gui.main_window import MainWindow
    monkeypatch.setenv("DENOISE_STUDIO_SETTINGS", str(tmp_path / "settings.ini"))
    w = MainWindow()
    w.ask_before_close = False
    w.training.runs_dir = tmp_path / "runs"
    qtbot.addWidget(w)
    w.show()
    yield w
    w.training.shutdown()
