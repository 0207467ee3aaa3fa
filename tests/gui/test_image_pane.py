"""The image pane: drops, σ slider, baselines, batches with bad files, synced zoom, saving."""
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from denoise_studio.core.baselines import BASELINES
from denoise_studio.core.data import ImageSet
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.spec import spec_from_dict
from denoise_studio.core.trainer import TrainConfig, Trainer
from tests.imagegen import TINY_SPEC, smooth_image, write_folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pane")
    spec = spec_from_dict(TINY_SPEC)
    cfg = TrainConfig(steps=60, batch_size=4, crop=24, lr=3e-3, warmup=5, device="cpu", sigma=(10.0, 50.0),
                      eval_every=30, checkpoint_every=30, preview_every=30)
    run = RunFolder.create(root / "run", spec, cfg.to_dict())
    Trainer(spec, cfg, run=run, images=ImageSet.load(write_folder(root / "data", n=5))).run()
    return root / "run"


@pytest.fixture
def pane(window, trained_run):
    assert window.training.open_run(trained_run)
    return window.image_pane


def photo(tmp_path, name="photo.png", size=(96, 128), seed=3, mode=None):
    a = smooth_image(*size, seed=seed)
    im = Image.fromarray(a[..., 0] if mode == "L" else a)
    p = tmp_path / name
    im.save(p)
    return p


def drop_files(window, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = window.rect().center()
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    try:
        enter, drop = QDragEnterEvent(pos, *args), QDropEvent(QPointF(pos), *args)
    except TypeError:
        enter, drop = QDragEnterEvent(QPoint(pos), *args), QDropEvent(QPoint(pos), *args)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    window.dropEvent(drop)


def shown_sigmas(pane) -> list:
    """The σ (0–255) of each result the pane receives for its current request, from its result signal."""
    seen: list = []
    pane.signals.result.connect(lambda r: seen.append(r.sigma255)
                                if not r.final and r.generation == pane.generation else None)
    return seen


def wait_done(qtbot, pane, need=("reconstruction",)):
    qtbot.waitUntil(lambda: not pane.busy and all(k in pane.images for k in need), timeout=60_000)


def test_dropping_an_image_denoises_it_with_scores_and_baselines(window, pane, qtbot, tmp_path):
    drop_files(window, [photo(tmp_path)])
    wait_done(qtbot, pane, need=("reconstruction", *BASELINES))
    imgs = pane.images
    assert imgs["noisy"].shape == imgs["reconstruction"].shape == imgs["clean"].shape == (96, 128, 3)
    assert "error" in imgs and imgs["noise"].shape == (96, 128, 3)
    assert pane.scores["reconstruction"][0] > pane.scores["noisy"][0] + 2
    assert set(BASELINES) <= set(pane.scores)
    assert "dB" in pane.titles["reconstruction"].text() and "SSIM" in pane.titles["median"].text()


def test_sigma_slider_renoises_and_rescores(window, pane, qtbot, tmp_path):
    pane.open_path(photo(tmp_path))
    wait_done(qtbot, pane)
    sigmas = shown_sigmas(pane)
    pane.sigma.setValue(40)
    qtbot.waitUntil(lambda: 40 in sigmas and not pane.busy and "reconstruction" in pane.scores,
                    timeout=60_000)
    noisy_40, noisy_img_40 = pane.scores["noisy"][0], pane.images["noisy"].copy()
    pane.sigma.setValue(10)
    qtbot.waitUntil(lambda: 10 in sigmas and not pane.busy and "reconstruction" in pane.scores,
                    timeout=60_000)
    assert pane.scores["noisy"][0] > noisy_40 + 8
    assert not np.allclose(pane.images["noisy"], noisy_img_40)
    qtbot.waitUntil(lambda: pane.sweep_net.getData()[0] is not None and len(pane.sweep_net.getData()[0]) == 7,
                    timeout=60_000)
    net, noisy = pane.sweep_net.getData()[1], pane.sweep_noisy.getData()[1]
    assert (net > noisy).sum() >= 5   # the network beats its input across noise levels


def test_ensemble_box_reruns_with_the_x8_self_ensemble(window, pane, qtbot, tmp_path):
    from denoise_studio.core.images import load_image
    from denoise_studio.core.inference import NOISE_SEED, add_noise, denoise
    path = photo(tmp_path)
    pane.open_path(path)
    wait_done(qtbot, pane)
    plain = pane.images["reconstruction"].copy()
    pane.ensemble_box.setChecked(True)
    qtbot.waitUntil(lambda: not pane.busy and "reconstruction" in pane.images
                    and not np.array_equal(pane.images["reconstruction"], plain), timeout=60_000)
    noisy = add_noise(load_image(path).pixels.transpose(2, 0, 1), 25, NOISE_SEED)
    want = denoise(window.current_model(), noisy, 25, ensemble=True).reconstruction.transpose(1, 2, 0)
    assert np.abs(pane.images["reconstruction"] - want).max() < 1e-5
    pane.ensemble_box.setChecked(False)


def test_real_noisy_photos_estimate_sigma_and_have_no_reference(window, pane, qtbot, tmp_path):
    clean = smooth_image(96, 96).astype(np.float32) / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20 / 255, clean.shape), 0, 1)
    p = tmp_path / "real.png"
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(p)
    pane.mode.setCurrentIndex(1)
    pane.open_path(p)
    wait_done(qtbot, pane)
    assert "clean" not in pane.images and "estimated" in pane.sigma_label.text()
    assert 12 < float(pane.sigma_label.text().split("≈")[1].split()[0]) < 28   # "σ ≈ 19.3 (estimated)"


def test_bad_drops_are_named_and_the_window_survives(window, pane, qtbot, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    drop_files(window, [bad])
    assert "broken.png" in pane.caption.text() and "corrupt" in pane.caption.text()
    assert window.isVisible()


def test_batch_reports_the_corrupt_file_and_writes_the_others(window, pane, qtbot, tmp_path):
    a, b = photo(tmp_path, "a.png"), photo(tmp_path, "b.png", seed=5, mode="L")
    bad = tmp_path / "c.png"
    bad.write_text("I am not a picture")
    out = tmp_path / "out"
    assert pane.run_batch([str(a), str(bad), str(b)], out_dir=out)
    qtbot.waitUntil(lambda: pane.batch is None, timeout=60_000)   # batch done
    assert sorted(p.name for p in out.iterdir()) == ["a_denoised.png", "b_denoised.png"]
    assert "; 1 skipped: " in pane.caption.text() and "c.png" in pane.caption.text()
    assert Image.open(out / "b_denoised.png").mode == "L"
    assert "2 of 3" in pane.caption.text()


def test_dropping_a_folder_runs_a_batch(window, pane, qtbot, tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "many", n=3, size=32)
    out = tmp_path / "out"
    monkeypatch.setattr("denoise_studio.gui.image_pane.QFileDialog.getExistingDirectory", lambda *a, **k: str(out))
    drop_files(window, [folder])
    assert pane.batch is not None                                      # started
    qtbot.waitUntil(lambda: pane.batch is None, timeout=60_000)       # and done
    assert len(list(out.iterdir())) == 3
    assert pane.caption.text() == "Batch: 3 of 3 image(s) written"   # none skipped


def test_panes_stay_in_sync_on_zoom_and_wipe_composes(window, pane, qtbot, tmp_path):
    pane.open_path(photo(tmp_path))
    wait_done(qtbot, pane, need=("reconstruction", *BASELINES))
    before = pane.boxes["noisy"].viewRange()
    pane.boxes["noisy"].setRange(xRange=(10, 30), yRange=(5, 25), padding=0)
    pane.boxes["noisy"].sigRangeChangedManually.emit([True, True])   # as a wheel or drag would
    qtbot.wait(50)
    zoomed = np.array(pane.boxes["noisy"].viewRange())
    assert zoomed[1, 1] - zoomed[1, 0] < (before[1][1] - before[1][0]) / 2   # zoomed in
    for page, name in (("reference", "clean"), ("network", "reconstruction"), ("baselines", "median"),
                       ("reference", "error")):
        pane.show_page(page)   # a view shown later takes the shared zoom
        qtbot.wait(20)
        r = np.array(pane.boxes[name].viewRange())
        assert np.allclose(r.mean(axis=1), zoomed.mean(axis=1), atol=1e-6), name   # same centre
        scale = lambda vb, rng: vb.width() / (rng[0, 1] - rng[0, 0])     # noqa: E731  screen px per image px
        assert abs(scale(pane.boxes[name], r) - scale(pane.boxes["noisy"], zoomed)) < 1e-3, name   # same zoom
        if page != "baselines":   # (two rows of smaller views there)
            assert np.allclose(r[1], zoomed[1], atol=1e-6), name            # same rows shown
    pane.wipe.setValue(25)
    comp = pane.images["compare"]
    cut = int(128 * 0.25)
    assert np.array_equal(comp[:, :cut], pane.images["noisy"][:, :cut])
    assert np.array_equal(comp[:, cut + 1:], pane.images["reconstruction"][:, cut + 1:])


def test_save_16_bit_where_the_input_was_and_copy(window, pane, qtbot, tmp_path):
    deep = (smooth_image(64, 64)[..., 0].astype(np.uint16) * 257)
    p = tmp_path / "deep.png"
    Image.fromarray(deep).save(p)
    pane.open_path(p)
    wait_done(qtbot, pane)
    pane.save_pane("reconstruction", tmp_path / "rec.png")
    assert Image.open(tmp_path / "rec.png").mode.startswith("I")
    pane.save_pane("noise", tmp_path / "noise.tif")
    assert pane.copy_pane("reconstruction")
    from PySide6.QtGui import QGuiApplication
    assert QGuiApplication.clipboard().image().width() == 64


@pytest.mark.parametrize("name", ["error", "noise", "reconstruction"])
def test_copy_puts_on_the_clipboard_exactly_what_save_writes(window, pane, qtbot, tmp_path, name):
    from PySide6.QtGui import QGuiApplication, QImage
    pane.open_path(photo(tmp_path))
    wait_done(qtbot, pane)
    assert name in pane.images
    pane.save_pane(name, tmp_path / f"{name}.png")
    saved = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"))
    assert pane.copy_pane(name)
    img = QGuiApplication.clipboard().image().convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    copied = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, :3 * w].reshape(h, w, 3)
    assert np.array_equal(copied, saved)


def test_feature_maps_of_the_selected_block(window, pane, qtbot, tmp_path):
    pane.open_path(photo(tmp_path))
    wait_done(qtbot, pane)
    pane.tabs.setCurrentWidget(pane.features)
    pane.set_selected_block(0)
    qtbot.waitUntil(lambda: pane.features.getImageItem().image is not None, timeout=30_000)
    grid = pane.features.getImageItem().image
    assert grid is not None and grid.shape[0] > 96 and 0 <= grid.min() and grid.max() <= 1


def test_without_a_network_the_noisy_input_and_baselines_still_show(qtbot, window, tmp_path, monkeypatch):
    from denoise_studio.core import presets
    monkeypatch.setattr(presets, "pretrained_path", lambda: tmp_path / "not-installed.safetensors")
    pane = window.image_pane
    pane.open_path(photo(tmp_path))
    wait_done(qtbot, pane, need=("noisy", *BASELINES))
    assert "reconstruction" not in pane.images


def test_gui_open_over_the_bad_input_corpus(window, pane, qtbot, tmp_path):
    from tests.badinputs import make_corpus
    for path, expect in make_corpus(tmp_path / "corpus").items():
        ok = pane.open_path(path)
        if expect == "load":
            assert ok, path
            qtbot.waitUntil(lambda: not pane.busy, timeout=60_000)
            assert "noisy" in pane.images and not pane.caption.text().startswith("Denoising failed"), path
        else:
            assert not ok and str(path) in pane.caption.text(), path
    assert window.isVisible()
