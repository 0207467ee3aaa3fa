import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

CHILD_TIMEOUT_MS = 120_000   # a training child's start-up and first steps on a loaded 2-core machine


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


@pytest.fixture
def view(window, tmp_path):
    """The window's training view, set to train the tiny network quickly on generated images."""
    from denoise_studio.core.spec import spec_from_dict
    from tests.imagegen import TINY_SPEC, write_folder
    window.doc.load(spec_from_dict(TINY_SPEC))
    v = window.training
    v.set_data_folder(str(write_folder(tmp_path / "data", n=5, size=40)))
    v.crop.setValue(16)
    v.batch.setValue(4)
    v.lr.setValue(0.003)
    return v
