"""Self-supervised objectives and the signal-dependent and correlated noise models."""
import math

import numpy as np
import pytest
import torch

from denoise_studio.core.data import ImageSet, check_observations
from denoise_studio.core.errors import DataError
from denoise_studio.core.noise import make_noise
from denoise_studio.core.objectives import OBJECTIVES, make_objective
from denoise_studio.core.plan import TrainConfig
from denoise_studio.core.spec import spec_from_dict
from denoise_studio.core.trainer import Trainer
from tests.imagegen import TINY_SPEC, smooth_image

GAUSS = make_noise({"noise": "gaussian", "sigma": [25, 25]})


def _noisy(b=2, c=3, h=24, w=24, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_n2v_masks_pixels_replaces_them_by_a_neighbour_and_scores_only_them():
    y = _noisy()
    level = torch.full((2,), 0.1)
    p = make_objective("n2v").pairs(y, GAUSS, level, torch.zeros_like(y), torch.Generator().manual_seed(1))
    assert p.x.shape == p.target.shape == y.shape and p.weight.shape == (2, 1, 24, 24)
    masked = p.weight[:, 0].bool()
    assert masked.sum() == 2 * 4 * 4   # one per 6×6 cell
    assert torch.equal(p.target, y)                                   # the target is the original pixel…
    assert (p.x.permute(0, 2, 3, 1)[masked] != y.permute(0, 2, 3, 1)[masked]).all()   # …the input is not
    assert torch.equal(p.x.permute(0, 2, 3, 1)[~masked], y.permute(0, 2, 3, 1)[~masked])
    # Every replacement is some pixel of its 5×5 neighbourhood.
    for b, i, j in masked.nonzero().tolist():
        window = y[b, :, max(0, i - 2):i + 3, max(0, j - 2):j + 3].flatten(1).T
        assert (window == p.x[b, :, i, j]).all(1).any()
    # The loss counts masked pixels only: a perfect guess there scores 0 whatever the rest is.
    pred = p.x - y   # gaussian: reconstruction = x − pred = y everywhere
    pred[~masked[:, None].expand_as(pred)] = 5.0
    assert float(make_objective("n2v").loss(p, pred, GAUSS, level, None).max()) == 0.0


def test_ne2ne_takes_input_and_target_from_two_adjacent_pixels_of_each_2x2_cell():
    b, h, w = 3, 8, 10
    pos = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(b, 2, h, w).clone()   # value = position
    p = make_objective("ne2ne").pairs(pos, GAUSS, torch.zeros(b), torch.zeros_like(pos),
                                      torch.Generator().manual_seed(3))
    assert p.x.shape == p.target.shape == (b, 2, h // 2, w // 2)
    assert torch.equal(p.x[:, 0], p.x[:, 1])   # the same pixel in every channel
    yi, xi = p.x[:, 0].long() // w, p.x[:, 0].long() % w
    yt, xt = p.target[:, 0].long() // w, p.target[:, 0].long() % w
    cy, cx = torch.arange(h // 2).view(1, -1, 1), torch.arange(w // 2).view(1, 1, -1)
    assert ((yi // 2 == cy) & (yt // 2 == cy) & (xi // 2 == cx) & (xt // 2 == cx)).all()   # the same cell
    assert ((yi - yt).abs() + (xi - xt).abs() == 1).all()   # different, adjacent pixels
    with pytest.raises(Exception, match="even"):
        make_objective("ne2ne").pairs(pos[..., :7], GAUSS, torch.zeros(b), pos[..., :7], torch.Generator())


def test_supervised_pairs_are_the_noise_process_corruption():
    clean, eps, level = _noisy(), torch.randn(2, 3, 24, 24), torch.full((2,), 0.1)
    p = make_objective("supervised").pairs(clean, GAUSS, level, eps, torch.Generator())
    assert torch.allclose(p.x, clean + 0.1 * eps) and torch.allclose(p.target, 0.1 * eps) and p.weight is None


@pytest.fixture(scope="module")
def images():
    imgs = [torch.from_numpy(smooth_image(64, 64, seed=i)).permute(2, 0, 1).contiguous() for i in range(6)]
    return ImageSet(imgs[:5], imgs[5:])


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_a_tiny_network_trained_100_steps_beats_the_noisy_input(images, objective):
    """With synthetic noise the images are corrupted once and only the noisy ones are trained on; the
    validation PSNR is against the clean crops."""
    events = []
    cfg = TrainConfig(steps=100, batch_size=4, crop=32, device="cpu", warmup=5, lr=3e-3, eval_every=100,
                      preview_every=100, checkpoint_every=1000, objective=objective, sigma=(25.0, 25.0),
                      synthetic_noise=True)
    result = Trainer(spec_from_dict(TINY_SPEC), cfg, sinks=[events.append], images=images).run()
    assert result.name == "finished"
    ev = [e for e in events if e.name == "eval"][-1]
    assert ev.psnr > ev.noisy_psnr + 1.5, (ev.psnr, ev.noisy_psnr)
    preview = [e for e in events if e.name == "preview"][-1]
    assert preview.stats["psnr"] > preview.stats["noisy_psnr"]


def test_self_supervised_on_real_noisy_images_uses_its_own_loss_and_never_a_clean_image(images):
    rng = np.random.default_rng(0)
    noisy = [(t.float() + torch.from_numpy(rng.normal(0, 25, t.shape)).float()).clamp(0, 255).round().byte()
             for t in images.train + images.val]
    data = ImageSet(noisy[:5], noisy[5:])
    events = []
    cfg = TrainConfig(data="noisy-folder", steps=60, batch_size=4, crop=32, device="cpu", warmup=5, lr=3e-3,
                      eval_every=30, preview_every=60, checkpoint_every=1000, objective="n2v")
    assert not cfg.adds_noise()
    trainer = Trainer(spec_from_dict(TINY_SPEC), cfg, sinks=[events.append], images=data)
    assert trainer.run().name == "finished"
    assert trainer.val_clean is None and all(20 < s < 30 for s in data.sigmas("train"))
    evals = [e for e in events if e.name == "eval"]
    assert evals[-1].psnr == pytest.approx(-10 * math.log10(evals[-1].loss), abs=1e-3)
    assert evals[-1].loss < evals[0].loss * 1.05
    assert "psnr" not in [e for e in events if e.name == "preview"][-1].stats   # nothing to compare with


def test_clean_folders_are_refused_and_one_image_or_mixed_levels_are_one_line_notes():
    with pytest.raises(DataError, match=r"look clean .*--noise gaussian --sigma 25.*--objective supervised"):
        check_observations("photos", [0.4, 1.2, 0.8], "n2v", 3)
    assert check_observations("photos", [20.0, 21.0, 22.0], "n2v", 3) == []
    (one,) = check_observations("photo.png", [25.0], "ne2ne", 1)
    assert one.startswith("one image: ne2ne trains on random crops")
    (mixed,) = check_observations("photos", [5.0, 6.0, 30.0, 40.0], "n2v", 4)
    assert "ranges from" in mixed and "training anyway" in mixed and "\n" not in mixed


def test_settings_that_cannot_work_with_an_objective_are_one_sentence_each():
    spec = spec_from_dict(TINY_SPEC)
    assert TrainConfig(objective="n2v", noise="ddpm").problems(spec)[0].startswith("n2v learns to denoise images")
    problems = TrainConfig(objective="ne2ne", noise="correlated", synthetic_noise=True, crop=33).problems(spec)
    assert "independent from pixel to pixel" in problems[0] and "crop 33 is not a multiple of 2" in problems[1]
    assert TrainConfig(noise="correlated", blur=0.1).problems(spec) == ["blur must be a kernel std from 0.3 to 5 "
                                                                        "pixels."]
    assert TrainConfig(objective="n2v").problems(spec) == []


@pytest.mark.parametrize("x0", [0.05, 0.3, 0.8])
def test_poisson_gaussian_noise_has_mean_zero_and_variance_gain_times_signal_plus_read_squared(x0):
    noise = make_noise({"noise": "poisson-gaussian", "gain": 4.0, "read": 10.0})
    clean = torch.full((1, 1, 256, 256), x0)
    x, n = noise.corrupt(clean, noise.sample_levels(1, torch.Generator()), torch.randn(clean.shape))
    var255 = float(n.var()) * 255 ** 2
    assert abs(float(n.mean()) * 255) < 0.3
    assert var255 == pytest.approx(4.0 * x0 * 255 + 100.0, rel=0.05)
    assert torch.allclose(x, clean + n)
    # The Poisson part is counts of gain/255: without read noise every value is on that grid.
    photons = make_noise({"noise": "poisson-gaussian", "gain": 4.0, "read": 0.0}).corrupt(
        clean, torch.zeros(1), torch.randn(clean.shape))[0] * 255 / 4.0
    assert torch.allclose(photons, photons.round(), atol=1e-3)


def test_correlated_noise_keeps_sigma_and_correlates_neighbours_as_its_kernel_says():
    eps = torch.randn(1, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    level = torch.tensor([25 / 255])
    for blur in (0.5, 1.0, 2.0):
        noise = make_noise({"noise": "correlated", "sigma": [25, 25], "blur": blur})
        n = noise.corrupt(torch.zeros_like(eps), level, eps)[1][..., 8:-8, 8:-8]
        rho = float((n[..., 1:] * n[..., :-1]).mean() / n.var())
        assert float(n.std()) * 255 == pytest.approx(25, rel=0.04)
        k = noise._kernel(eps)   # unit energy: the lag-1 autocorrelation of the blurred noise is Σ k·k(shifted)
        assert rho == pytest.approx(float((k[:, 1:] * k[:, :-1]).sum()), abs=0.03)
        if blur >= 1:   # the continuous kernel's exp(−1/(4·blur²)) that the docstring quotes
            assert rho == pytest.approx(math.exp(-1 / (4 * blur * blur)), abs=0.05)
    white = GAUSS.corrupt(torch.zeros_like(eps), level, eps)[1]
    assert abs(float((white[..., 1:] * white[..., :-1]).mean() / white.var())) < 0.02


def test_a_network_that_sees_one_pixel_cannot_train_with_n2v_and_the_reason_is_one_sentence():
    one_by_one = spec_from_dict({**TINY_SPEC, "blocks": [
        {"type": "conv", "out_channels": 8, "kernel": 1, "norm": "none", "act": "relu"},
        {"type": "conv", "out_channels": 3, "kernel": 1, "norm": "none", "act": "none"}]})
    (problem,) = TrainConfig(objective="n2v").problems(one_by_one)
    assert problem.startswith("n2v predicts each pixel from its neighbours, but this network sees only 1×1")
    assert TrainConfig(objective="supervised").problems(one_by_one) == []
