"""The image pane as a first-time user meets it: three large pictures that never move unless
the user moves them, a network before any training, and what a mode switch must clear."""
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from denoise_studio.core import checkpoint, presets
from tests.gui.test_image_pane import drop_files, shown_sigmas, trained_run, wait_done  # noqa: F401  (fixture)
from tests.imagegen import smooth_image

MAIN = ("noisy", "noise", "reconstruction")


@pytest.fixture
def pretrained(monkeypatch, trained_run):  # noqa: F811
    """The shipped network, or (until bench/pretrain.py has written it) a small trained stand-in."""
    if presets.pretrained_path().is_file():
        return presets.pretrained_path()
    path = trained_run / "checkpoints" / "best.safetensors"
    monkeypatch.setattr(presets, "pretrained_path", lambda: path)
    monkeypatch.setattr(checkpoint, "pretrained_path", lambda: path)
    return path


def landscape(tmp_path, h=150, w=224):
    p = tmp_path / "landscape.png"
    Image.fromarray(smooth_image(h, w, seed=7)).save(p)
    return p


def drawn(pane, name):
    """(picture w, h, view w, h) in the view's widget pixels, as drawn on screen."""
    pic, view = pane.picture_rect(name)
    return np.array([pic.width(), pic.height(), view.width(), view.height()])


def settle(qtbot, pane):
    wait_done(qtbot, pane)
    qtbot.wait(30)   # a resize or relayout the results caused


@pytest.mark.parametrize("size", [(1280, 800), (1500, 950)])
def test_three_pictures_large_and_steady_through_reruns(window, pretrained, qtbot, tmp_path, size):
    window.resize(*size)
    qtbot.wait(50)
    pane = window.image_pane
    drop_files(window, [landscape(tmp_path)])
    settle(qtbot, pane)
    assert "pretrained" in pane.network_label.text()
    first = {n: drawn(pane, n) for n in MAIN}
    for n, (pw, ph, vw, vh) in first.items():
        assert max(pw, ph) >= 0.6 * min(vw, vh), (n, first[n])         # large: fitted to its view
        assert pw <= vw + 0.5 and ph <= vh + 0.5, (n, first[n])          # and whole
        assert abs(pw / ph - 224 / 150) < 0.02, n                        # not stretched
    ranges = np.array(pane.boxes["noisy"].viewRange())
    sigmas = shown_sigmas(pane)
    for sigma in (10, 35, 50, 5, 25):
        sigmas.clear()
        pane.sigma.setValue(sigma)
        qtbot.waitUntil(lambda: sigma in sigmas, timeout=60_000)   # noqa: B023
        settle(qtbot, pane)
    pane.ensemble_box.setChecked(True)
    settle(qtbot, pane)
    pane.ensemble_box.setChecked(False)
    settle(qtbot, pane)
    pane.mode.setCurrentIndex(1)
    settle(qtbot, pane)
    for n in MAIN:
        assert np.allclose(drawn(pane, n), first[n], atol=0.5), (n, drawn(pane, n), first[n])
    assert np.allclose(pane.boxes["noisy"].viewRange(), ranges, atol=1e-6)


def test_fit_and_one_to_one_and_a_rerun_keeps_the_users_view(window, pretrained, qtbot, tmp_path):
    window.resize(1500, 950)
    pane = window.image_pane
    pane.open_path(landscape(tmp_path, 300, 448))
    settle(qtbot, pane)
    fitted = drawn(pane, "reconstruction")
    pane.one_to_one()
    qtbot.wait(30)   # drawn at the next paint
    for n in MAIN:
        assert np.allclose(drawn(pane, n)[:2], (448, 300), atol=0.5), n   # one screen px per image px
    pane.boxes["noise"].translateBy(x=40, y=10)           # the user pans one view: all follow
    pane.boxes["noise"].sigRangeChangedManually.emit([True, True])
    want = np.array(pane.boxes["noise"].viewRange())
    sigmas = shown_sigmas(pane)
    pane.sigma.setValue(40)
    qtbot.waitUntil(lambda: 40 in sigmas, timeout=60_000)
    settle(qtbot, pane)
    for n in MAIN:
        r = np.array(pane.boxes[n].viewRange())
        assert np.allclose(r.mean(axis=1), want.mean(axis=1), atol=1e-6), n   # same centre, kept
    assert np.allclose(drawn(pane, "noisy")[:2], (448, 300), atol=0.5)
    pane.fit()
    qtbot.wait(30)
    assert np.allclose(drawn(pane, "reconstruction"), fitted, atol=0.5)


def test_a_drop_before_any_training_uses_the_pretrained_network(window, pretrained, qtbot, tmp_path):
    assert window.training.current_run is None
    pane = window.image_pane
    drop_files(window, [landscape(tmp_path)])
    settle(qtbot, pane)
    assert pane.scores["reconstruction"][0] > pane.scores["noisy"][0] + 1
    assert "pretrained" in pane.network_label.text() and "shipped" in pane.network_label.text()
    assert window.current_model() is window.current_model()   # loaded once


def test_mode_switch_clears_what_no_longer_applies(window, pretrained, qtbot, tmp_path):
    pane = window.image_pane
    pane.open_path(landscape(tmp_path))
    settle(qtbot, pane)
    assert {"clean", "error", "true_noise"} <= set(pane.images) and len(pane.hist_true.getData()[0])
    pane.show_page("reference")
    pane.mode.setCurrentIndex(1)
    assert not {"clean", "error", "true_noise"} & set(pane.images)      # at once, not after the re-run
    assert pane.hist_true.getData()[0] is None or len(pane.hist_true.getData()[0]) == 0
    assert pane.page == "network" and not pane.selector.isTabEnabled(1)
    settle(qtbot, pane)
    assert not {"clean", "error", "true_noise"} & set(pane.images) and "true" not in pane.hist.plotItem.titleLabel.text
    assert "reconstruction" in pane.images and "estimated" in pane.sigma_label.text()


def test_opened_runs_show_stats_given_as_numbers(window):
    pane = window.image_pane
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(0, 0.2, (32, 32, 3)), -0.5, 0.5).astype(np.float32)   # rescaled, as from a PNG
    imgs = {"noisy": rng.random((32, 32, 3)), "noise": noise, "reconstruction": rng.random((32, 32, 3)),
            "clean": rng.random((32, 32, 3))}
    pane.show_result(imgs, "step 200", {"reconstruction": "30.00 dB"},
                     stats={"noise_std": 26.36, "true_noise_std": 25.0, "psnr": 30.0, "noisy_psnr": 20.17})
    title = pane.hist.plotItem.titleLabel.text
    assert "26.36" in title and "25.00" in title and f"{noise.std() * 255:.2f}" not in title
    assert "30.00 dB" in pane.titles["reconstruction"].text()


def test_x8_shows_progress_and_cancel_keeps_the_plain_result(window, pretrained, qtbot, tmp_path):
    pane = window.image_pane
    pane.open_path(landscape(tmp_path))
    settle(qtbot, pane)
    plain = pane.images["reconstruction"].copy()
    seen = []
    pane.signals.ensemble_progress.connect(lambda g, d, t: seen.append((d, t)))
    pane.ensemble_box.setChecked(True)
    pane.cancel_batch()   # before its first ×8 pass: the plain network still answers
    qtbot.waitUntil(lambda: not pane.ensemble_box.isChecked() and not pane.busy, timeout=60_000)
    assert np.array_equal(pane.images["reconstruction"], plain) and not pane.batch_row.isVisible()
    pane.ensemble_box.setChecked(True)
    settle(qtbot, pane)
    assert seen and seen[-1][0] == seen[-1][1] == 8 * (seen[-1][1] // 8) > 0
    assert not np.array_equal(pane.images["reconstruction"], plain)


@pytest.mark.parametrize("size, least", [((1280, 800), 150), ((1500, 950), 200)])
def test_the_docks_leave_the_pictures_large_at_first_launch(window, pretrained, qtbot, tmp_path, size, least):
    """Issue 15: the training dock and the builder take a share of the window, not a fixed size, so
    the three pictures stay large on a laptop screen as on a desktop one."""
    window.resize(*size)
    qtbot.wait(100)
    assert window.training_dock.height() <= 0.36 * size[1]
    assert window.builder_dock.width() <= 0.36 * size[0]
    drop_files(window, [landscape(tmp_path)])
    settle(qtbot, window.image_pane)
    for n in MAIN:
        pw, ph, vw, vh = drawn(window.image_pane, n)
        assert ph >= least, (n, ph, size)
        assert max(pw, ph) >= 0.6 * min(vw, vh), (n, pw, ph, vw, vh)


def test_a_dock_the_user_sized_stays_as_they_left_it(window, qtbot):
    window.resize(1500, 950)
    qtbot.wait(100)
    window.resizeDocks([window.training_dock], [420], Qt.Orientation.Vertical)   # as a drag of its edge
    qtbot.wait(50)
    h = window.training_dock.height()
    window.resize(1400, 900)
    qtbot.wait(100)
    assert window.training_dock.height() == h
