"""The app's Sample tab and what feeds it: the newest checkpoint of the open run (reloaded when it
changes), one line for a network that cannot sample, the shapes data with its recipe and preset,
and the precision path shown for live and opened runs."""
import json
import os

import pytest

from denoise_studio.core import plan
from denoise_studio.core.precision import auto_amp, describe
from denoise_studio.core.trainer import TrainConfig
from tests.imagegen import train_tiny_run


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("ddpm") / "run", noise="ddpm", timesteps=30)


def test_the_sample_tab_samples_from_the_open_runs_newest_checkpoint(window, ddpm_run, qtbot):
    assert window.centre.tabText(0) == "Denoise" and window.centre.widget(0) is window.image_pane
    assert window.image_pane.objectName() == "ImagePane"
    assert window.training.open_run(ddpm_run)
    window.centre.setCurrentWidget(window.sample_view)
    view = window.sample_view
    lm = window.newest_model()
    assert lm is not None and lm.path.name == "last.safetensors" and lm.noise.has_timesteps
    assert window.newest_model() is lm                    # cached while the file is unchanged
    view.n.setValue(2)
    view.steps.setValue(3)
    assert view.start()
    qtbot.waitUntil(lambda: not view.running, timeout=60_000)
    assert [f[0] for f in view.frames] == [1, 2, 3]
    assert view.frames[-1][1].shape == (16, 2 * 18 - 2, 3)   # two 16² samples (the run's crop) side by side
    assert "Done" in view.caption.text() and not view.picture.pixmap().isNull()
    last = ddpm_run / "checkpoints" / "last.safetensors"
    st = last.stat()
    os.utime(last, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # a new checkpoint while training
    assert window.newest_model() is not lm


def test_a_dropped_image_brings_the_denoise_tab_back(window, tmp_path):
    from PIL import Image

    from tests.gui.test_image_pane import drop_files
    window.centre.setCurrentWidget(window.sample_view)
    p = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (90, 120, 150)).save(p)
    drop_files(window, [p])
    assert window.centre.currentWidget() is window.image_pane


def test_a_gaussian_network_gets_one_line_saying_what_totrain_tiny_run(window, tmp_path, qtbot):
    assert window.training.open_run(train_tiny_run(tmp_path / "gauss", noise="gaussian"))
    view = window.sample_view
    assert view.start()
    qtbot.waitUntil(lambda: not view.running, timeout=60_000)
    text = view.caption.text()
    assert "ddpm" in text.lower() and "shapes" in text and not view.frames and "\n" not in text


def test_without_any_network_the_tab_says_what_totrain_tiny_run(window, monkeypatch, tmp_path):
    from denoise_studio.core import presets
    monkeypatch.setattr(presets, "pretrained_path", lambda: tmp_path / "none.safetensors")
    assert window.training.current_run is None and window.newest_model() is None
    assert not window.sample_view.start()
    assert "shapes" in window.sample_view.caption.text()


def test_shapes_data_applies_its_recipe_and_offers_its_preset(window, qtbot):
    tv = window.training
    assert [tv.noise.itemText(i) for i in range(tv.noise.count())][:2] == ["gaussian", "ddpm"]
    assert tv.sigma_row.isVisibleTo(tv) and not tv.ddpm_row.isVisibleTo(tv)
    tv.set_data("shapes")
    want = plan.recipe("shapes")
    cfg = tv.config()
    assert cfg.data == "shapes"
    for key in ("noise", "schedule", "timesteps", "crop", "batch_size", "lr", "steps"):
        assert getattr(cfg, key) == pytest.approx(want[key]) if key == "lr" else getattr(cfg, key) == want[key], key
    assert tv.ddpm_row.isVisibleTo(tv) and tv.ddpm_row.isEnabled() and not tv.sigma_row.isVisibleTo(tv)
    preset = plan.RECOMMENDED_PRESET["shapes"]
    assert tv.preset_button.isVisibleTo(tv) and preset in tv.preset_button.text()
    assert "crop 32" in tv.status.text() and "Sample tab" in tv.status.text()
    window.ask_before_close = False   # no "save changes?" question
    tv.preset_button.click()
    assert window.doc.spec.name == preset and not tv.preset_button.isVisibleTo(tv)
    tv.set_data("builtin")           # back: the defaults the recipe had changed
    cfg = tv.config()
    assert (cfg.data, cfg.noise, cfg.crop, cfg.batch_size) == ("builtin", "gaussian", TrainConfig.crop,
                                                               TrainConfig.batch_size)
    assert not tv.preset_button.isVisibleTo(tv)


def test_precision_is_auto_by_default_and_shown_for_opened_runs(window, ddpm_run):
    tv = window.training
    assert tv.config().amp == "auto"
    kind = "cuda" if tv.device_selector.device().startswith("cuda") else tv._device_type()
    path = describe(kind, auto_amp(kind))   # the label is short, the tooltip whole
    assert tv.precision_label.text() == "auto → " + path.split(" (")[0].replace(" autocast", "")
    assert path in tv.precision_label.toolTip()
    recorded = json.loads((ddpm_run / "config.json").read_text()).get("precision")
    assert recorded, "the trainer records its precision path in config.json"
    assert tv.open_run(ddpm_run)
    assert tv.precision_label.text() == f"run: {recorded.split(' (')[0].replace(' autocast', '')}"
    assert recorded in tv.precision_label.toolTip()
    tv.amp.setCurrentIndex(tv.amp.findData("off"))
    assert tv.config().amp == "off"
