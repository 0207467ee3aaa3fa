import numpy as np
import pytest
import torch

from denoise_studio.core.inference import add_noise, denoise, estimate_sigma255, model_from_spec, predict
from denoise_studio.core.presets import load_preset
from denoise_studio.core.spec import spec_from_dict
from tests.imagegen import TINY_SPEC, smooth_image


@pytest.mark.parametrize("preset", ["dncnn", "plain"])
def test_tiled_matches_whole_image(preset):
    """Exact for networks whose output depends only on a window (BatchNorm in eval, no norm).
    GroupNorm and attention see the whole input, so their tiles differ slightly (see README)."""
    torch.manual_seed(0)
    spec = load_preset("dncnn") if preset == "dncnn" else spec_from_dict(
        dict(TINY_SPEC, blocks=[dict(b, norm="none") for b in TINY_SPEC["blocks"]]))
    lm = model_from_spec(spec)
    x = torch.rand(3, 150, 170)
    whole = predict(lm, x, None, tile=None)
    tiled = predict(lm, x, None, tile=64)
    assert tiled.shape == whole.shape == x.shape
    err = float(((tiled - whole) ** 2).mean())
    peak = float(whole.abs().max()) ** 2
    assert 10 * np.log10(peak / max(err, 1e-20)) >= 50   # no seams


@pytest.mark.parametrize("h, w", [(1, 1), (7, 13), (33, 64), (1, 200)])
def test_any_size_is_padded_and_cropped_back(h, w):
    lm = model_from_spec(load_preset("unet"))
    r = denoise(lm, np.random.rand(3, h, w).astype(np.float32), sigma255=25)
    assert r.reconstruction.shape == (3, h, w) and r.noise.shape == (3, h, w)
    assert 0 <= r.reconstruction.min() and r.reconstruction.max() <= 1


def test_sigma_is_estimated_for_real_noisy_photos():
    clean = smooth_image(96, 96).transpose(2, 0, 1).astype(np.float32) / 255
    noisy = add_noise(clean, 20, seed=1)
    assert abs(estimate_sigma255(noisy) - 20) < 4
    r = denoise(model_from_spec(spec_from_dict(TINY_SPEC)), noisy)
    assert r.estimated and abs(r.sigma255 - 20) < 4


def test_add_noise_is_seeded_and_unclipped():
    clean = np.full((3, 8, 8), 0.99, np.float32)
    a, b = add_noise(clean, 25, seed=4), add_noise(clean, 25, seed=4)
    assert np.array_equal(a, b) and a.max() > 1 and abs(float((a - clean).std()) * 255 - 25) < 5


def test_feature_maps_grid_and_psnr_sweep():
    from denoise_studio.core.inference import feature_maps, psnr_sweep
    lm = model_from_spec(load_preset("unet-small"))
    pixels = smooth_image(70, 90).astype(np.float32) / 255
    grid = feature_maps(lm, pixels, block=1, sigma255=25, max_channels=16)
    assert grid.shape == (4 * (70 + 2), 4 * (70 + 2))     # 16 of 32 channels, 4×4, at the 70×70 centre crop
    assert 0 <= grid.min() and grid.max() <= 1
    sigmas, noisy, net = psnr_sweep(lm, pixels.transpose(2, 0, 1), sigmas=(10, 30))
    assert sigmas == [10, 30] and noisy[0] > noisy[1] and len(net) == 2


def test_self_ensemble_is_equivariant_to_flips_and_turns():
    from denoise_studio.core.inference import predict_ensemble
    lm = model_from_spec(load_preset("unet-small"))
    for p in lm.model.parameters():     # a head far from zero, so the network's own asymmetry shows
        torch.nn.init.normal_(p, std=0.2)
    x = torch.rand(3, 24, 32)
    turn = lambda t: torch.rot90(t, 1, (-2, -1))  # noqa: E731
    plain_gap = float((predict(lm, turn(x), None) - turn(predict(lm, x, None))).abs().max())
    ens_gap = float((predict_ensemble(lm, turn(x), None) - turn(predict_ensemble(lm, x, None))).abs().max())
    assert plain_gap > 1e-2 and ens_gap < 1e-4 * plain_gap
    flip_gap = (predict_ensemble(lm, x.flip(-1), None) - predict_ensemble(lm, x, None).flip(-1)).abs().max()
    assert float(flip_gap) < 1e-4 * plain_gap
    r = denoise(lm, np.random.rand(3, 7, 13).astype(np.float32), sigma255=25, ensemble=True)
    assert r.reconstruction.shape == (3, 7, 13)
