"""Images at the boundary, by class: special files, sizes over each cap, extreme aspect ratios,
networks whose channels images cannot have, flat images, cost estimates made before allocating."""
import os
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from denoise_studio.core import limits
from denoise_studio.core.errors import DataError, ImageError
from denoise_studio.core.images import from_channels, load_image, plan_outputs, to_channels
from denoise_studio.core.inference import (
    add_noise,
    check_denoise_memory,
    denoise,
    estimate_sigma255,
    model_from_spec,
    network_bytes,
    plan_tiles,
    predict,
)
from denoise_studio.core.presets import load_preset
from denoise_studio.core.spec import spec_from_dict
from tests.imagegen import TINY_SPEC, smooth_image

GiB = 2**30
NO_NORM = dict(TINY_SPEC, blocks=[dict(b, norm="none") for b in TINY_SPEC["blocks"]])


@pytest.fixture
def plenty(monkeypatch):
    """A fixed 8 GiB of 'available' memory, so estimates are judged the same on every machine."""
    monkeypatch.setattr(limits, "available_memory", lambda device=None: 8 * GiB)


# ---------------------------------------------------------------- special files

def test_special_files_are_one_error_each_never_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    for path, expect in ((tmp_path / "fifo.png", "not a regular file"), ("/dev/zero", "not a regular file"),
                         (tmp_path / "dir.png", "is a folder"), (tmp_path / "dangling.png", "no such file")):
        with pytest.raises(ImageError, match=expect) as e:
            load_image(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- caps, each with its env override

@pytest.mark.parametrize("cap_name,size,env_value", [
    ("IMAGE_SIDE", (300, 2), "299"),          # width over the side cap
    ("IMAGE_SIDE", (2, 300), "299"),          # height
    ("IMAGE_PIXELS", (40, 40), "1599"),
    ("IMAGE_BYTES", (40, 40), "50"),
])
def test_each_image_cap_refuses_in_one_line_and_can_be_raised(cap_name, size, env_value, tmp_path, monkeypatch):
    p = tmp_path / "x.png"
    Image.fromarray(smooth_image(size[1], size[0])).save(p)
    monkeypatch.setenv(f"DENOISE_STUDIO_MAX_{cap_name}", env_value)
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(p) in str(e.value) and f"DENOISE_STUDIO_MAX_{cap_name}" in str(e.value)
    monkeypatch.setenv(f"DENOISE_STUDIO_MAX_{cap_name}", str(10**9))
    assert load_image(p).pixels.shape == (size[1], size[0], 3)


def test_memory_is_estimated_before_decoding(tmp_path, monkeypatch):
    p = tmp_path / "x.png"
    Image.fromarray(smooth_image(64, 64)).save(p)
    monkeypatch.setattr(limits, "available_memory", lambda device=None: 100_000)
    with pytest.raises(ImageError, match="memory") as e:
        load_image(p)
    assert "64×64" in str(e.value)
    monkeypatch.setattr(limits, "available_memory", lambda device=None: 8 * GiB)
    asked = []
    load_image(p, plan_bytes=lambda h, w: asked.append((h, w)) or 0)
    assert asked == [(64, 64)]
    with pytest.raises(ImageError, match="memory"):
        load_image(p, plan_bytes=lambda h, w: 7 * GiB)


# ---------------------------------------------------------------- extreme aspect ratios and tiles

def test_thin_images_are_padded_to_the_factor_not_to_a_tile():
    lm = model_from_spec(load_preset("unet-small"))
    f = lm.factor
    for h, w in ((1, 65535), (65535, 1), (3, 5000)):
        plan = plan_tiles(lm, h, w, 512)
        assert plan.H < h + f and plan.W < w + f
        assert plan.th * plan.tw <= 512 * 512
        assert len(plan.ys) * len(plan.xs) <= 2      # long tiles of a tile's area, not 128 slivers
    assert not plan_tiles(lm, 1, 200, 512).tiled


def test_thin_tiled_result_matches_the_whole_image():
    torch.manual_seed(0)
    lm = model_from_spec(spec_from_dict(NO_NORM))
    x = torch.rand(3, 5, 3000)
    whole = predict(lm, x, None, tile=None)
    tiled = predict(lm, x, None, tile=32)
    assert plan_tiles(lm, 5, 3000, 32).tiled
    err = float(((tiled - whole) ** 2).mean())
    assert 10 * np.log10(float(whole.abs().max()) ** 2 / max(err, 1e-20)) >= 50


def test_attention_without_tiles_is_refused_by_the_estimate(plenty):
    lm = model_from_spec(load_preset("unet"))
    # attention at a quarter of 1024²: 65,536 positions, 4 heads → ~137 GB of scores
    assert network_bytes(lm, 1024, 1024) > 100 * GiB
    with pytest.raises(limits.LimitError, match="--tile") as e:
        check_denoise_memory(lm, 1024, 1024, tile=0)
    assert "1024×1024" in str(e.value)
    with pytest.raises(limits.LimitError):
        denoise(lm, np.zeros((3, 1024, 1024), np.float32), 25, tile=0)
    check_denoise_memory(lm, 1024, 1024, tile=-1)   # the default tile fits


def test_network_estimate_tracks_real_activation_memory():
    lm = model_from_spec(spec_from_dict(TINY_SPEC))
    # three 16/16/3-channel blocks at 64×64, fp32
    assert network_bytes(lm, 64, 64) == 4 * 64 * 64 * (16 + 16 + 3)
    assert network_bytes(lm, 32, 128) == network_bytes(lm, 64, 64)


# ---------------------------------------------------------------- silent wrong results

def test_add_noise_makes_no_float64_temporaries():
    clean = np.random.default_rng(0).random((3, 500, 500), dtype=np.float32)
    tracemalloc.start()
    try:
        noisy = add_noise(clean, 25, seed=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert peak < 1.3 * clean.nbytes            # one float32 image; a float64 draw alone is 2×
    assert abs(float((noisy - clean).std()) * 255 - 25) < 0.5


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 1, 1), (3, 1, 500), (3, 2, 2)])
@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_flat_images_have_sigma_zero_without_warnings(shape, level, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimate_sigma255(np.full(shape, level, np.float32)) == 0.0
    assert capfd.readouterr().err == ""


def test_tiny_noisy_images_get_a_finite_sigma():
    rng = np.random.default_rng(0)
    for shape in ((3, 1, 2), (1, 2, 1), (3, 3, 3)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s = estimate_sigma255(rng.random(shape, dtype=np.float32))
        assert np.isfinite(s) and s >= 0


@pytest.mark.parametrize("channels", [0, 2, 4, 5, 64])
def test_networks_of_other_channel_counts_are_refused_by_name(channels, tmp_path):
    rgb = smooth_image(8, 8).astype(np.float32) / 255
    for pixels in (rgb, rgb[..., 0]):
        with pytest.raises(ImageError, match=f"in_channels {channels}") as e:
            to_channels(pixels, channels)
        assert "1 (grey) or 3 (RGB)" in str(e.value)
    with pytest.raises(ImageError, match=f"in_channels {channels}"):
        from_channels(np.zeros((channels, 4, 4), np.float32), like_grey=False)
    from denoise_studio.core.data import ImageSet
    from tests.imagegen import write_folder
    with pytest.raises(DataError, match=f"in_channels {channels}"):
        ImageSet.load(write_folder(tmp_path / "d", n=1, size=16), channels=channels)
    with pytest.raises(DataError, match=f"in_channels {channels}"):
        ImageSet.load("builtin", channels=channels)


def test_grey_and_colour_networks_convert_sensibly():
    rgb = smooth_image(8, 8).astype(np.float32) / 255
    assert to_channels(rgb, 1).shape == (1, 8, 8)
    assert np.allclose(to_channels(rgb[..., 1], 3), np.repeat(rgb[None, ..., 1], 3, axis=0))
    assert from_channels(to_channels(rgb, 3), like_grey=False).shape == (8, 8, 3)
    assert from_channels(to_channels(rgb, 1), like_grey=True).shape == (8, 8)


def test_baselines_at_sigma_zero_return_the_input():
    from denoise_studio.core.baselines import BASELINES, run_baseline
    x = np.random.default_rng(0).random((3, 20, 20), dtype=np.float32)
    for name in BASELINES:
        assert np.array_equal(run_baseline(name, x, 0.0), x)


# ---------------------------------------------------------------- output names

def test_plans_are_distinct_and_never_an_input(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"")
    alias = out / "x_denoised.png"
    os.link(a, alias)                        # a hard link to an input, where x's result would go
    inputs = [a, b, tmp_path / "b" / "x.jpg", tmp_path / "b" / "X.png", alias]
    plans = plan_outputs(inputs, out, ("denoised", "noise"))
    names = [p.name for plan in plans for p in plan.values()]
    assert len({n.casefold() for n in names}) == len(names) == 10
    assert [plan["denoised"].name for plan in plans] == [
        "x-2_denoised.png", "x-3_denoised.png", "x-4_denoised.png", "X-5_denoised.png", "x_denoised_denoised.png"]
    assert all(not p.exists() for plan in plans for p in plan.values())


def test_results_in_the_inputs_folder_skip_the_inputs_names(tmp_path):
    inputs = [tmp_path / "img.png", tmp_path / "img_noise.png"]
    plans = plan_outputs(inputs, tmp_path, ("denoised", "noise", "noisy"))
    planned = {p for plan in plans for p in plan.values()}
    assert not planned & set(inputs) and len(planned) == 6
    assert plans[0]["noise"].name == "img-2_noise.png"


def test_gpu_activations_are_checked_against_the_gpu_and_buffers_against_ram(monkeypatch):
    import dataclasses
    calls = []
    monkeypatch.setattr(limits, "check_memory", lambda needed, what, fix, device=None: calls.append((needed, device)))
    lm = model_from_spec(spec_from_dict(TINY_SPEC))
    check_denoise_memory(lm, 1000, 1000)
    assert [d for _, d in calls] == [None]
    cpu_total = calls[0][0]
    calls.clear()
    check_denoise_memory(dataclasses.replace(lm, device=torch.device("cuda")), 1000, 1000)
    (host, d1), (gpu, d2) = calls
    assert d1 is None and d2.type == "cuda"
    assert host + gpu == cpu_total and gpu >= network_bytes(lm, 512, 512)
