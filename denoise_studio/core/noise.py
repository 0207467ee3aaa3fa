"""Noise processes: how a clean image becomes the network's input, and back.

One object answers every question about the noise, so training targets, previews,
metrics and the GUI's panes all agree:

- `gaussian`: x = x₀ + σ·ε with σ drawn from a range given on the 0–255 scale. The
  network predicts the noise that was added, n = σ·ε, in image units, so the training
  loss is exactly the reconstruction's MSE (PSNR = −10·log10(loss)).
- `ddpm`: x_t = √ᾱ_t·(2x₀−1) + √(1−ᾱ_t)·ε with t uniform in [0, T) and a linear or cosine
  schedule. The network predicts ε, as DDPM does.

Images are float tensors in [0, 1], shape (B, C, H, W). A noise "level" is one float per
sample: σ/255 for gaussian, t for ddpm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class GaussianNoise:
    sigma_min: float = 5.0    # 0–255 scale
    sigma_max: float = 50.0
    kind = "gaussian"

    def sample_levels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, generator=generator)
        return (self.sigma_min + u * (self.sigma_max - self.sigma_min)) / 255.0

    def level_for_sigma(self, sigma255: float) -> float:
        return sigma255 / 255.0

    def sigma_of(self, level: torch.Tensor) -> torch.Tensor:
        """Noise std in [0, 1] image units."""
        return level

    def prepare(self, y: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """The network input for an image that is already noisy at `level`."""
        return y

    def corrupt(self, x0, level, eps):
        """(network input, training target) for clean x0, levels and unit noise eps."""
        n = level.view(-1, 1, 1, 1).to(x0.dtype) * eps
        return x0 + n, n

    def reconstruct(self, x, pred, level):
        return x - pred

    def display_noisy(self, x, level):
        return x

    def added_noise(self, pred, level):
        """Predicted noise in image units, for display and histograms."""
        return pred

    def condition(self, level: torch.Tensor, conditioning: str) -> torch.Tensor | None:
        if conditioning == "noise_level":
            return level
        if conditioning == "timestep":
            return level * 255.0   # a timestep-like scalar: σ on the 0–255 scale
        return None

    def to_dict(self) -> dict:
        return {"noise": "gaussian", "sigma": [self.sigma_min, self.sigma_max]}


@dataclass
class DDPMNoise:
    schedule: str = "linear"
    timesteps: int = 1000
    kind = "ddpm"

    def __post_init__(self):
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; use linear or cosine")
        T = self.timesteps
        if self.schedule == "linear":
            # Ho et al.'s 1e-4…0.02 for T = 1000, rescaled so any T spans the same total noise;
            # capped below 1 so a short schedule (T < 50) never makes ᾱ negative.
            betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64).clamp(max=0.999)
            self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        else:   # Nichol & Dhariwal 2021
            s = 0.008
            steps = torch.arange(T + 1, dtype=torch.float64) / T
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
            self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        self.alphas_cumprod = self.alphas_cumprod.float()

    def _abar(self, level, like):
        t = level.long().clamp(0, self.timesteps - 1)
        return self.alphas_cumprod.to(like.device)[t].view(-1, 1, 1, 1).to(like.dtype)

    def sample_levels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.timesteps, (n,), generator=generator).float()

    def sigma_of(self, level: torch.Tensor) -> torch.Tensor:
        """Equivalent std of additive noise on the [0, 1] image: x_t = √ᾱ·(2(x₀ + σε) − 1)."""
        abar = self.alphas_cumprod[level.long().clamp(0, self.timesteps - 1)]
        return torch.sqrt((1 - abar) / abar) / 2

    def level_for_sigma(self, sigma255: float) -> float:
        sig = torch.sqrt((1 - self.alphas_cumprod) / self.alphas_cumprod) / 2
        return float(torch.argmin((sig - sigma255 / 255.0).abs()))

    def prepare(self, y, level):
        return self._abar(level, y).sqrt() * (2 * y - 1)

    def corrupt(self, x0, level, eps):
        abar = self._abar(level, x0)
        return abar.sqrt() * (2 * x0 - 1) + (1 - abar).sqrt() * eps, eps

    def reconstruct(self, x, pred, level):
        abar = self._abar(level, x)
        return ((x - (1 - abar).sqrt() * pred) / abar.sqrt() + 1) / 2

    def display_noisy(self, x, level):
        return (x / self._abar(level, x).sqrt() + 1) / 2

    def added_noise(self, pred, level):
        abar = self._abar(level, pred)
        return (1 - abar).sqrt() * pred / abar.sqrt() / 2

    def condition(self, level, conditioning):
        if conditioning == "noise_level":
            return self.sigma_of(level).to(level.device)
        if conditioning == "timestep":
            return level
        return None

    def to_dict(self) -> dict:
        return {"noise": "ddpm", "schedule": self.schedule, "timesteps": self.timesteps}


def make_noise(d: dict):
    """From a config dict: {"noise": "gaussian", "sigma": [lo, hi]} or {"noise": "ddpm", ...}."""
    if d.get("noise", "gaussian") == "gaussian":
        lo, hi = d.get("sigma", (5.0, 50.0))
        return GaussianNoise(float(lo), float(hi))
    return DDPMNoise(d.get("schedule", "linear"), int(d.get("timesteps", 1000)))
