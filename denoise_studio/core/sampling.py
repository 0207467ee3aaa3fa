"""Sampling: the reverse diffusion process, from pure noise to an image, with a trained noise predictor.

Both samplers walk a decreasing sequence of timesteps τ_k of the DDPM process in noise.py
(x_t = √ᾱ_t·y + √(1−ᾱ_t)·ε with y = 2x₀−1) and take the same step from τ_k to τ_{k−1}:

    x̂₀ = (x − √(1−ᾱ)·ε̂) / √ᾱ, clipped to [−1, 1]; ε̂ recomputed from the clipped x̂₀
    σ_k = η · √((1−ᾱ_prev)/(1−ᾱ)) · √(1 − ᾱ/ᾱ_prev)
    x_prev = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev−σ_k²)·ε̂ + σ_k·z

- `ddpm`: η = 1 over every timestep (T steps): σ_k² is then exactly the posterior variance
  β̃_t = β_t(1−ᾱ_{t−1})/(1−ᾱ_t) and the mean the posterior mean — ancestral sampling (Ho et
  al. 2020). With fewer steps it is the same ancestral rule on a respaced schedule.
- `ddim`: η = 0 by default (deterministic, Song et al. 2021), any number of steps ≤ T.

A sampler is a generator of `SampleFrame`s (x_t and x̂₀ after each step, as [0, 1] images), so the
app can animate a run without keeping every step. Seeded: the same seed gives the same images.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.limits import check_cap, check_memory

SAMPLERS = ("ddpm", "ddim")


class SamplingError(DenoiseError):
    """A network or setting that cannot sample."""


@dataclass
class SampleFrame:
    index: int               # 1 … total: steps taken so far
    total: int
    t: int                   # the timestep just reached (−1 once finished)
    x: torch.Tensor          # (N, C, H, W) the current image x_t, mapped to [0, 1] for display
    x0: torch.Tensor         # (N, C, H, W) the predicted clean image x̂₀ in [0, 1]


def timesteps_for(total_timesteps: int, steps: int) -> list[int]:
    """`steps` evenly spaced timesteps from T−1 down to 0 (all of them when steps == T); their spacing
    is at least 1, so rounding keeps them distinct."""
    return torch.linspace(total_timesteps - 1, 0, steps, dtype=torch.float64).round().long().tolist()


def check_sampling(lm, n: int, steps: int, size: int, eta: float) -> None:
    """One line for every reason this network or these settings cannot sample; nothing allocated yet."""
    noise = lm.noise
    if not noise.has_timesteps:
        raise SamplingError(f"this network was trained on {getattr(noise, 'kind', 'unknown')} noise; sampling "
                            "needs a network trained on the DDPM process: train one with `--noise ddpm` "
                            "(for example `denoise-studio train shapes-unet --data shapes --noise ddpm`).")
    if lm.spec.conditioning == "none":
        raise SamplingError("this network is not told the timestep (conditioning none), so it cannot follow the "
                            "reverse process; train a network with timestep conditioning, such as the "
                            "shapes-unet preset.")
    if not 1 <= steps <= noise.timesteps:
        raise SamplingError(f"steps {steps} is outside 1…{noise.timesteps} (the network's T); choose fewer steps.")
    if n < 1:
        raise SamplingError(f"n {n} must be at least 1.")
    check_cap("SAMPLES", n, "number of samples")
    if not (math.isfinite(eta) and 0 <= eta <= 1):
        raise SamplingError(f"eta {eta} must be between 0 (deterministic DDIM) and 1 (DDPM-like).")
    if size < lm.factor or size % lm.factor:
        raise SamplingError(f"size {size} must be a positive multiple of {lm.factor} for this network.")
    from denoise_studio.core.analysis import analyze
    a = analyze(lm.spec, size)
    per_image = a.activation_bytes * 3 + 4 * lm.spec.in_channels * size * size * 4
    check_memory(per_image * n, f"sampling {n} images of {size}×{size}", "sample fewer images (--n) at a time.",
                 lm.device)


@torch.no_grad()
def sample(lm, n: int = 16, steps: int | None = None, sampler: str = "ddim", eta: float | None = None,
           seed: int = 0, size: int = 32, amp_dtype: torch.dtype | None = None,
           cancel=None) -> Iterator[SampleFrame]:
    """Yield a SampleFrame after every step; the last frame holds the samples.

    lm: a LoadedModel of a DDPM-trained, timestep- (or noise-level-) conditioned network.
    cancel: an optional callable returning True to stop early (checked between steps)."""
    if sampler not in SAMPLERS:
        raise SamplingError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}.")
    noise = lm.noise
    T = getattr(noise, "timesteps", 0)
    steps = steps or (T if sampler == "ddpm" else min(50, T))
    eta = (1.0 if sampler == "ddpm" else 0.0) if eta is None else float(eta)
    check_sampling(lm, n, steps, size, eta)
    dev = lm.device
    abar = noise.alphas_cumprod.to(dev, torch.float64)
    gen = torch.Generator().manual_seed(seed)
    shape = (n, lm.spec.in_channels, size, size)
    x = torch.randn(shape, generator=gen, dtype=torch.float32).to(dev)
    ts = timesteps_for(T, steps)
    to_image = lambda y: ((y.float() + 1) / 2).clamp(0, 1).cpu()  # noqa: E731
    for k, t in enumerate(ts):
        if cancel is not None and cancel():
            return
        a = abar[t]
        a_prev = abar[ts[k + 1]] if k + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64, device=dev)
        level = torch.full((n,), float(t))
        cond = noise.condition(level, lm.spec.conditioning)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            eps = lm.model(x, None if cond is None else cond.to(dev)).float()
        a32, ap32 = float(a), float(a_prev)
        x0 = ((x - math.sqrt(1 - a32) * eps) / math.sqrt(a32)).clamp(-1, 1)
        eps = (x - math.sqrt(a32) * x0) / math.sqrt(max(1 - a32, 1e-12))
        sigma = eta * math.sqrt(max((1 - ap32) / max(1 - a32, 1e-12) * (1 - a32 / ap32), 0.0))
        x = math.sqrt(ap32) * x0 + math.sqrt(max(1 - ap32 - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(shape, generator=gen, dtype=torch.float32).to(dev)
        yield SampleFrame(k + 1, len(ts), ts[k + 1] if k + 1 < len(ts) else -1, to_image(x), to_image(x0))


def run_sampler(lm, **kwargs) -> SampleFrame:
    """Run a sampler to the end and return its last frame."""
    last = None
    for frame in sample(lm, **kwargs):
        last = frame
    if last is None:
        raise SamplingError("sampling was cancelled before its first step.")
    return last


def grid(images: torch.Tensor, columns: int | None = None, gap: int = 2, scale: int = 1):
    """(N, C, H, W) in [0, 1] → one (H', W', C) float numpy image, white gaps, nearest-neighbour upscaled."""
    import numpy as np
    n, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, c), np.float32)
    for i, im in enumerate(images.numpy()):
        r, q = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = im.transpose(1, 2, 0)
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out[..., 0] if c == 1 else out
