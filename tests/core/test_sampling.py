"""Samplers: DDPM is the posterior (ancestral) rule, DDIM is deterministic, both seeded; the shapes
set and its acceptance rule; refusals for networks that cannot sample."""
import math

import numpy as np
import pytest
import torch

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.inference import model_from_spec
from denoise_studio.core.sampling import grid, run_sampler, sample, timesteps_for
from denoise_studio.core.shapes import is_clean_shape, make_shapes
from denoise_studio.core.spec import ArchitectureSpec

T = 20


def tiny_timestep_spec(conditioning="timestep"):
    return ArchitectureSpec(name="tiny-t", conditioning=conditioning, embedding_dim=8, blocks=[
        {"type": "conv", "out_channels": 8, "norm": "none", "act": "none"},
        {"type": "residual", "norm": "group:4", "act": "silu"},
        {"type": "conv", "out_channels": 3, "norm": "none", "act": "none"},
    ])


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    m = model_from_spec(tiny_timestep_spec(), {"noise": "ddpm", "schedule": "linear", "timesteps": T})
    head = [c for c in m.model.blocks[-1].modules() if isinstance(c, torch.nn.Conv2d)][-1]
    with torch.no_grad():   # undo the near-zero head init, so the predicted noise matters in every step
        head.weight.mul_(100)
    return m


def test_ddpm_is_ancestral_sampling_with_the_posterior_variance(lm):
    """Each DDPM step equals x_{t-1} = μ̃(x_t, x̂0) + √β̃_t·z, written out from Ho et al. (2020)."""
    n, size = 2, 8
    last = run_sampler(lm, n=n, sampler="ddpm", seed=3, size=size)
    abar = lm.noise.alphas_cumprod.double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, size, size, generator=gen)
    for t in range(T - 1, -1, -1):
        a, a_prev = abar[t], (abar[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64))
        beta = 1 - a / a_prev
        with torch.no_grad():
            eps = lm.model(x, torch.full((n,), float(t))).float()
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1).float()
        mean = (a_prev.sqrt() * beta / (1 - a)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a)) * x
        var = beta * (1 - a_prev) / (1 - a)
        x = mean.float()
        if t > 0:
            x = x + var.sqrt().float() * torch.randn(n, 3, size, size, generator=gen)
    expected = ((x + 1) / 2).clamp(0, 1)
    assert last.total == T and last.t == -1
    assert torch.allclose(last.x, expected, atol=1e-4)


def test_same_seed_same_images_and_other_seed_differs(lm):
    a = run_sampler(lm, n=3, sampler="ddim", steps=5, seed=7, size=8).x
    b = run_sampler(lm, n=3, sampler="ddim", steps=5, seed=7, size=8).x
    c = run_sampler(lm, n=3, sampler="ddim", steps=5, seed=8, size=8).x
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_ddim_eta0_is_deterministic_given_the_start_and_eta1_is_not(lm):
    """With η = 0 no noise is drawn after x_T: a sampler seeded alike but with η > 0 differs."""
    d0 = run_sampler(lm, n=2, sampler="ddim", steps=6, eta=0.0, seed=1, size=8).x
    d1 = run_sampler(lm, n=2, sampler="ddim", steps=6, eta=1.0, seed=1, size=8).x
    assert not torch.allclose(d0, d1)


def test_trajectory_yields_every_step_with_images_in_range(lm):
    frames = list(sample(lm, n=2, sampler="ddim", steps=4, seed=0, size=8))
    assert [f.index for f in frames] == [1, 2, 3, 4]
    assert [f.t for f in frames][-1] == -1
    for f in frames:
        assert f.x.shape == f.x0.shape == (2, 3, 8, 8)
        assert 0 <= float(f.x.min()) and float(f.x.max()) <= 1


def test_cancel_stops_between_steps(lm):
    seen = []
    frames = list(sample(lm, n=1, sampler="ddim", steps=6, size=8, cancel=lambda: len(seen) >= 2 or seen.append(1)))
    assert len(frames) == 2


def test_timesteps_are_unique_decreasing_and_end_at_zero():
    for steps in (1, 7, 50, 999, 1000):
        ts = timesteps_for(1000, steps)
        assert ts == sorted(set(ts), reverse=True) and len(ts) == steps and ts[0] == 999
        assert ts[-1] == (0 if steps > 1 else 999)   # one step goes from T−1 straight to x̂0
    assert timesteps_for(1000, 1000) == list(range(999, -1, -1))


@pytest.mark.parametrize("noise, conditioning, kwargs, words", [
    ({"noise": "gaussian"}, "timestep", {}, "--noise ddpm"),
    ({"noise": "ddpm", "timesteps": T}, "none", {}, "conditioning none"),
    ({"noise": "ddpm", "timesteps": T}, "timestep", {"steps": T + 1}, f"1…{T}"),
    ({"noise": "ddpm", "timesteps": T}, "timestep", {"n": 10**9}, "DENOISE_STUDIO_MAX_SAMPLES"),
    ({"noise": "ddpm", "timesteps": T}, "timestep", {"eta": math.nan}, "eta"),
    ({"noise": "ddpm", "timesteps": T}, "timestep", {"size": 0}, "multiple"),
])
def test_networks_and_settings_that_cannot_sample_are_refused_in_one_line(noise, conditioning, kwargs, words):
    m = model_from_spec(tiny_timestep_spec(conditioning), noise)
    args = {"n": 2, "size": 8, "sampler": "ddim", "steps": 2, **kwargs}
    with pytest.raises(DenoiseError) as e:
        run_sampler(m, **args)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_shapes_pass_the_rule_and_noise_or_noisy_shapes_do_not():
    real = make_shapes(300, seed=5).astype(np.float32) / 255
    rng = np.random.default_rng(0)
    assert np.mean([is_clean_shape(im) for im in real]) > 0.97
    assert not any(is_clean_shape(rng.random((3, 32, 32)).astype(np.float32)) for _ in range(50))
    assert not any(is_clean_shape(np.clip(im + rng.normal(0, 0.1, im.shape), 0, 1)) for im in real[:50])
    flat = np.full((3, 32, 32), 0.5, np.float32)
    assert not is_clean_shape(flat)


def test_shapes_are_seeded_and_varied():
    a, b = make_shapes(20, seed=1), make_shapes(20, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, make_shapes(20, seed=2))
    assert len({tuple(im[:, 0, 0]) for im in make_shapes(200, seed=0)}) >= 3   # several backgrounds


def test_grid_layout():
    g = grid(torch.zeros(5, 3, 4, 4), gap=1, scale=2)
    assert g.shape == ((2 * 5 - 1) * 2, (3 * 5 - 1) * 2, 3)

