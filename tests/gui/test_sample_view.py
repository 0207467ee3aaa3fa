"""The Sample view: the grid denoises step by step off the GUI thread, the slider replays the
trajectory, x̂₀ can be shown instead of x_t, Save writes the grid, Cancel stops, and networks
that cannot sample get one line."""
import numpy as np
import pytest
import torch
from PIL import Image

from denoise_studio.core.inference import model_from_spec
from denoise_studio.core.spec import spec_from_dict
from denoise_studio.gui.sample_view import SampleView
from tests.imagegen import TINY_DDPM_SPEC


def make_view(qtbot, noise):
    torch.manual_seed(0)
    lm = model_from_spec(spec_from_dict(TINY_DDPM_SPEC), noise)
    view = SampleView()
    view.model_provider = lambda: lm
    view.resize(900, 600)
    qtbot.addWidget(view)
    view.show()
    return view


def pixels(view) -> np.ndarray:
    img = view.picture.pixmap().toImage()
    return np.array([img.pixel(x, y) for y in range(0, img.height(), 7) for x in range(0, img.width(), 7)])


def test_sampling_fills_the_trajectory_and_the_slider_replays_it(qtbot, tmp_path):
    view = make_view(qtbot, {"noise": "ddpm", "timesteps": 20})
    view.n.setValue(4)
    view.steps.setValue(8)
    assert view.start()
    qtbot.waitUntil(lambda: not view.running, timeout=20_000)
    assert [f[0] for f in view.frames] == list(range(1, 9))
    assert view.slider.isEnabled() and view.slider.maximum() == 7 and view.save_button.isEnabled()
    pm = view.picture.pixmap()
    assert pm.width() >= 0.6 * min(view.picture.width(), view.picture.height())   # large, not a thumbnail
    last = pixels(view)
    view.slider.setValue(0)
    assert not np.array_equal(pixels(view), last)    # step 1 (mostly noise) differs from the result
    assert view.step_label.text().startswith("step 1 / 8")
    view.slider.setValue(7)
    view.show_x0.setChecked(True)
    assert "x̂₀" in view.step_label.text()
    out = tmp_path / "grid.png"
    assert view.save(out)
    g = np.asarray(Image.open(out))
    assert g.shape == (4 * (2 * 34 - 2), 4 * (2 * 34 - 2), 3)   # 2×2 grid of 32² with 2-px gaps, 4× enlarged


def test_same_seed_same_grid(qtbot):
    view = make_view(qtbot, {"noise": "ddpm", "timesteps": 20})
    view.n.setValue(2)
    view.steps.setValue(3)
    results = []
    for _ in range(2):
        view.start()
        qtbot.waitUntil(lambda: not view.running, timeout=20_000)
        results.append(view.frames[-1][1])
    assert np.array_equal(*results)


def test_cancel_stops_between_steps(qtbot):
    view = make_view(qtbot, {"noise": "ddpm", "timesteps": 1000})
    view.sampler.setCurrentIndex(1)   # ddpm: all 1000 steps
    assert view.steps.value() == 1000 and view.eta.value() == 1.0
    view.n.setValue(2)
    view.start()
    qtbot.waitUntil(lambda: len(view.frames) >= 2, timeout=20_000)
    view.cancel()
    qtbot.waitUntil(lambda: not view.running, timeout=20_000)
    assert view.frames[-1][0] < 1000 and "Cancelled" in view.caption.text()
    assert view.sample_button.isEnabled()


@pytest.mark.parametrize("noise, words", [({"noise": "gaussian"}, "--noise ddpm"), (None, "No network")])
def test_networks_that_cannot_sample_say_why(qtbot, noise, words):
    view = make_view(qtbot, noise or {"noise": "ddpm"})
    if noise is None:
        view.model_provider = lambda: None
    view.start()
    qtbot.waitUntil(lambda: not view.running, timeout=20_000)
    assert words in view.caption.text() and view.frames == []
