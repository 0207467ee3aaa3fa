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

A new process is one class implementing `NoiseProcess` plus `@register_noise`: the CLI's
`--noise` choices, the app's options, checkpoints' validation and `make_noise` read the
registry, `NOISE_PROCESSES`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.limits import cap


@runtime_checkable
class NoiseProcess(Protocol):
    """What every noise process answers. Tensors are (B, C, H, W); `level` is (B,)."""

    kind: ClassVar[str]             # its registry name, the "noise" of its config
    has_timesteps: ClassVar[bool]   # levels are discrete timesteps t (reverse-process sampling works)
    config_keys: ClassVar[frozenset[str]]   # the keys its config dict may hold

    @classmethod
    def from_dict(cls, d: dict) -> NoiseProcess: ...
    @classmethod
    def config_problems(cls, d: dict) -> list[tuple[str, str]]:
        """(field, what it must be) for every wrong value of a config (from an untrusted file)."""
        ...
    def to_dict(self) -> dict: ...
    def sample_levels(self, n: int, generator: torch.Generator) -> torch.Tensor: ...
    def level_for_sigma(self, sigma255: float) -> float: ...
    def sigma_of(self, level: torch.Tensor) -> torch.Tensor: ...
    def prepare(self, y: torch.Tensor, level: torch.Tensor) -> torch.Tensor: ...
    def corrupt(self, x0: torch.Tensor, level: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ...
    def reconstruct(self, x: torch.Tensor, pred: torch.Tensor, level: torch.Tensor) -> torch.Tensor: ...
    def display_noisy(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor: ...
    def added_noise(self, pred: torch.Tensor, level: torch.Tensor) -> torch.Tensor: ...
    def condition(self, level: torch.Tensor, conditioning: str) -> torch.Tensor | None: ...


NOISE_PROCESSES: dict[str, type[NoiseProcess]] = {}


def register_noise(cls):
    NOISE_PROCESSES[cls.kind] = cls
    return cls


def make_noise(d: dict) -> NoiseProcess:
    """From a config dict: {"noise": "gaussian", "sigma": [lo, hi]}, {"noise": "ddpm", ...}, or any
    registered process (no "noise": gaussian)."""
    kind = d.get("noise", "gaussian")
    cls = NOISE_PROCESSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DenoiseError(f"unknown noise process {kind!r}; valid processes are: {', '.join(NOISE_PROCESSES)}.")
    return cls.from_dict(d)


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


@register_noise
@dataclass
class GaussianNoise:
    sigma_min: float = 5.0    # 0–255 scale
    sigma_max: float = 50.0
    kind: ClassVar[str] = "gaussian"
    has_timesteps: ClassVar[bool] = False
    config_keys: ClassVar[frozenset[str]] = frozenset({"noise", "sigma"})

    @classmethod
    def from_dict(cls, d: dict) -> GaussianNoise:
        lo, hi = d.get("sigma", (5.0, 50.0))
        return cls(float(lo), float(hi))

    @classmethod
    def config_problems(cls, d: dict) -> list[tuple[str, str]]:
        if "sigma" not in d:
            return []
        sigma = d["sigma"]
        if not (isinstance(sigma, list) and len(sigma) == 2 and all(_is_number(v) and 0 <= v <= 255 for v in sigma)
                and sigma[0] <= sigma[1]):
            return [("noise.sigma", "two numbers from 0 to 255, the lower first")]
        return []

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


SCHEDULES = ("linear", "cosine")


@register_noise
@dataclass
class DDPMNoise:
    schedule: str = "linear"
    timesteps: int = 1000
    kind: ClassVar[str] = "ddpm"
    has_timesteps: ClassVar[bool] = True
    config_keys: ClassVar[frozenset[str]] = frozenset({"noise", "schedule", "timesteps"})

    @classmethod
    def from_dict(cls, d: dict) -> DDPMNoise:
        return cls(d.get("schedule", "linear"), int(d.get("timesteps", 1000)))

    @classmethod
    def config_problems(cls, d: dict) -> list[tuple[str, str]]:
        problems = []
        if d.get("schedule", "linear") not in SCHEDULES:
            problems.append(("noise.schedule", f"one of {', '.join(SCHEDULES)}"))
        t = d.get("timesteps", 1000)
        if not (isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= cap("TIMESTEPS")):
            problems.append(("noise.timesteps", f"an integer from 1 to {cap('TIMESTEPS'):,}"))
        return problems

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
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

