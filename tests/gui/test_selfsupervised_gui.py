"""Self-supervised training from the app: the objective choice, the noise process's own settings,
the synthetic-noise choice, what an objective needs of the network in the builder's problems list,
and the image pane's "already noisy" mode using a network trained on noisy images alone."""
import json

from PIL import Image

from denoise_studio.core.checkpoint import load_checkpoint
from denoise_studio.core.presets import load_preset
from denoise_studio.core.spec import spec_from_dict
from tests.gui.conftest import CHILD_TIMEOUT_MS
from tests.imagegen import TINY_SPEC, smooth_image

# A network of 1×1 convolutions only: it never sees a pixel's neighbours, so n2v cannot train it.
ONE_BY_ONE_SPEC = dict(TINY_SPEC, name="one-by-one", blocks=[
    {"type": "conv", "out_channels": 8, "kernel": 1, "norm": "none", "act": "relu"},
    {"type": "conv", "out_channels": 3, "kernel": 1, "norm": "none", "act": "none"},
])


def choose(combo, value: str) -> None:
    i = combo.findData(value)
    if i < 0:
        i = combo.findText(value)
    assert i >= 0, value
    combo.setCurrentIndex(i)


def problem_texts(window) -> list[str]:
    issues = window.builder.summary.issues
    return [issues.item(i).text() for i in range(issues.count())]


def legend_names(pane) -> list[str]:
    return [label.text for _, label in pane.hist_legend.items]


def test_choosing_n2v_sets_the_objective_and_rounds_the_crop(window):
    v = window.training
    names = [v.objective.itemData(i) for i in range(v.objective.count())]
    assert names[:3] == ["supervised", "n2v", "ne2ne"] and v.objective.currentData() == "supervised"
    tips = {n: v.objective.itemData(i, 3) for i, n in enumerate(names)}   # 3: ToolTipRole
    assert "noisy images alone" in tips["n2v"] and "noisy images alone" in tips["ne2ne"]
    assert "clean" in tips["supervised"]
    window.doc.load(load_preset("unet"))              # downsamples twice: crops are multiples of 4
    v.crop.setValue(30)
    assert v.config().crop == 28 and v.config().objective == "supervised"
    choose(v.objective, "n2v")
    cfg = v.config()
    assert cfg.objective == "n2v" and cfg.crop == 28 and v.crop.value() == 28
    choose(v.objective, "ne2ne")                       # trains on half-size sub-images: multiples of 8
    assert v.config().objective == "ne2ne" and v.config().crop == 24 and v.crop.value() == 24
    assert v.config().problems(window.doc.spec) == []


def test_poisson_gaussian_shows_gain_and_read_and_their_values_reach_the_config(window):
    v = window.training
    assert not v.poisson_row.isVisible() and v.sigma_row.isVisible()
    choose(v.noise, "poisson-gaussian")
    assert v.poisson_row.isVisible() and not v.sigma_row.isVisible() and not v.blur.isVisible()
    v.gain.setValue(2.5)
    v.read.setValue(7.0)
    cfg = v.config()
    assert (cfg.noise, cfg.gain, cfg.read) == ("poisson-gaussian", 2.5, 7.0)
    assert cfg.noise_dict() == {"noise": "poisson-gaussian", "gain": 2.5, "read": 7.0}
    choose(v.noise, "gaussian")
    assert not v.poisson_row.isVisible() and v.sigma_row.isVisible()


def test_correlated_shows_blur_beside_the_sigma_range(window):
    v = window.training
    assert not v.blur.isVisible()
    choose(v.noise, "correlated")
    assert v.blur.isVisible() and v.sigma_row.isVisible() and not v.poisson_row.isVisible()
    v.blur.setValue(2.0)
    assert v.config().noise_dict() == {"noise": "correlated", "sigma": [5.0, 50.0], "blur": 2.0}
    choose(v.noise, "ddpm")
    assert not v.blur.isVisible() and v.ddpm_row.isVisible()


def test_synthetic_noise_is_offered_only_for_self_supervised_objectives(window):
    v = window.training
    assert not v.synthetic.isEnabled() and v.synthetic.text() == "Add synthetic noise to these (clean) images"
    choose(v.objective, "n2v")
    assert v.synthetic.isEnabled()
    v.synthetic.setChecked(True)
    assert v.config().synthetic_noise is True
    choose(v.objective, "supervised")
    assert not v.synthetic.isEnabled() and v.config().synthetic_noise is False
    choose(v.objective, "ne2ne")
    assert v.synthetic.isEnabled() and v.config().synthetic_noise is True


def test_n2v_with_a_1x1_network_is_in_the_builders_problems_list(window):
    v = window.training
    window.doc.load(spec_from_dict(ONE_BY_ONE_SPEC))
    assert not any("n2v" in t for t in problem_texts(window))
    assert problem_texts(window)[0].startswith("No problems")
    assert ">valid<" in window.builder.summary.totals.text()
    choose(v.objective, "n2v")
    texts = problem_texts(window)
    totals = window.builder.summary.totals.text()   # it builds, but is not valid for n2v
    assert ">valid<" not in totals and "builds; 1 problem(s) for n2v training" in totals
    ours = [t for t in texts if "n2v predicts each pixel from its neighbours" in t]
    assert len(ours) == 1 and "1×1" in ours[0] and "3×3 convolution" in ours[0]
    assert not any(t.startswith("No problems") for t in texts)
    assert not v.start() and "n2v predicts each pixel" in v.message.text()
    window.doc.load(spec_from_dict(TINY_SPEC))         # 3×3 convolutions: nothing to say
    assert not any("n2v" in t for t in problem_texts(window))
    window.doc.load(spec_from_dict(ONE_BY_ONE_SPEC))
    choose(v.objective, "supervised")
    assert not any("n2v" in t for t in problem_texts(window))
    assert ">valid<" in window.builder.summary.totals.text()


def test_ddpm_with_n2v_is_a_one_line_problem_not_an_exception(window):
    v = window.training
    choose(v.noise, "ddpm")
    assert v.message.text() == ""
    choose(v.objective, "n2v")
    shown = v.message.text()
    assert shown.startswith("Settings: n2v learns to denoise images, not diffusion timesteps") and "\n" not in shown
    assert not v.start()
    assert v.message.text().startswith("Fix the settings before training: n2v learns to denoise images")
    assert not v.runs_dir.exists() and not v.session.running
    choose(v.noise, "gaussian")
    assert v.settings_problems() == []
    assert v.message.text().startswith("Fix the settings")   # the refusal stays until the next Start
    choose(v.noise, "ddpm")
    choose(v.noise, "gaussian")                               # a live problem, once fixed, goes
    assert v.message.text() == ""


def test_already_noisy_without_a_run_uses_the_shipped_network_and_shows_no_true_noise(window, qtbot, tmp_path):
    pane = window.image_pane
    path = tmp_path / "photo.png"
    Image.fromarray(smooth_image(48, 48, seed=5)).save(path)
    pane.baselines_box.setChecked(False)
    assert pane.open_path(path)
    qtbot.waitUntil(lambda: not pane.busy and "reconstruction" in pane.images, timeout=60_000)
    assert legend_names(pane) == ["predicted", "true"]
    choose(pane.mode, "noisy")
    qtbot.waitUntil(lambda: not pane.busy and "reconstruction" in pane.images, timeout=60_000)
    assert pane.network_label.text() == "network: pretrained unet-small (shipped)"   # unchanged without a run
    assert "true_noise" not in pane.images and legend_names(pane) == ["predicted"]
    choose(pane.mode, "add")
    qtbot.waitUntil(lambda: not pane.busy and "true_noise" in pane.images, timeout=60_000)
    assert legend_names(pane) == ["predicted", "true"]


def test_a_self_supervised_run_from_the_panel_serves_the_already_noisy_mode(view, window, qtbot, tmp_path):
    choose(view.objective, "n2v")
    view.synthetic.setChecked(True)   # the generated images are clean: corrupt them once, learn from that
    view.steps.setValue(5)
    ended = []
    view.session.ended.connect(ended.append)
    assert view.start()
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    assert ended[0].name == "finished", getattr(ended[0], "message", "")
    run = view.current_run
    last = run / "checkpoints" / "last.safetensors"
    assert load_checkpoint(last).meta["config"]["objective"] == "n2v"
    assert json.loads((run / "config.json").read_text())["objective"] == "n2v"
    pane = window.image_pane
    path = tmp_path / "real.png"
    Image.fromarray(smooth_image(40, 40, seed=9)).save(path)
    pane.baselines_box.setChecked(False)
    choose(pane.mode, "noisy")
    assert pane.open_path(path)
    qtbot.waitUntil(lambda: not pane.busy and "reconstruction" in pane.images, timeout=60_000)
    label = pane.network_label.text()
    assert label.startswith(f"network: run {run.name}, step 5") and "n2v, trained on noisy images alone" in label
    assert pane._req.model is window.newest_model() and pane._req.model.path == last
    assert legend_names(pane) == ["predicted"]
