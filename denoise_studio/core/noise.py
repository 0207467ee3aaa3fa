"""Noise processes: how a clean image becomes the network's input, and back.

One object answers every question about the noise, so training targets, previews,
metrics and the GUI's panes all agree:

- `gaussian`: x = x₀ + σ·ε with σ drawn from a range given on the 0–255 scale. The
  network predicts the noise that was added, n = σ·ε, in image units, so the training
  loss is exactly the reconstruction's MSE (PSNR = −10·log10(loss)).
- `poisson-gaussian`: signal-dependent, x = a·Poisson(x₀/a) + N(0, b²) on the 0–255 scale
  (photon-limited cameras and microscopes); the network predicts the noise added.
- `correlated`: gaussian noise blurred by a small Gaussian kernel, rescaled to σ per pixel.
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


class AdditiveNoise:
    """What every process that adds noise to the image itself shares: the network predicts the noise
    added, in image units (so the loss is the reconstruction's MSE), a level is a σ in [0, 1] units,
    and the reconstruction is the input minus the prediction."""

    def sigma_of(self, level: torch.Tensor) -> torch.Tensor:
        """Noise std in [0, 1] image units."""
        return level

    def prepare(self, y: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """The network input for an image that is already noisy at `level`."""
        return y

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


@register_noise
@dataclass
class GaussianNoise(AdditiveNoise):
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

    def corrupt(self, x0, level, eps):
        """(network input, training target) for clean x0, levels and unit noise eps."""
        n = level.view(-1, 1, 1, 1).to(x0.dtype) * eps
        return x0 + n, n

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



def _mid_grey_sigma(gain: float, read: float) -> float:
    """The std (0–255) of Poisson–Gaussian noise on mid-grey: its one-number summary."""
    return math.sqrt(gain * 127.5 + read * read)


@register_noise
@dataclass
class PoissonGaussianNoise(AdditiveNoise):
    """Signal-dependent noise, as photon-limited cameras and microscopes produce: on the 0–255
    scale x = a·Poisson(x₀/a) + N(0, b²), so Var[x] = a·x₀ + b² (a: gain, b: read noise). The
    network predicts the noise added, in image units, as for gaussian. The level is fixed by
    (a, b): the equivalent σ on mid-grey, /255."""

    gain: float = 4.0
    read: float = 10.0
    kind: ClassVar[str] = "poisson-gaussian"
    has_timesteps: ClassVar[bool] = False
    config_keys: ClassVar[frozenset[str]] = frozenset({"noise", "gain", "read"})

    @classmethod
    def from_dict(cls, d: dict) -> PoissonGaussianNoise:
        return cls(float(d.get("gain", 4.0)), float(d.get("read", 10.0)))

    @classmethod
    def config_problems(cls, d: dict) -> list[tuple[str, str]]:
        problems = []
        if not (_is_number(d.get("gain", 4.0)) and 0 < d.get("gain", 4.0) <= 255):
            problems.append(("noise.gain", "a number above 0 and at most 255"))
        if not (_is_number(d.get("read", 10.0)) and 0 <= d.get("read", 10.0) <= 255):
            problems.append(("noise.read", "a number from 0 to 255"))
        return problems

    @property
    def _level(self) -> float:
        return _mid_grey_sigma(self.gain, self.read) / 255.0

    def sample_levels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.full((n,), self._level)

    def level_for_sigma(self, sigma255: float) -> float:
        return self._level   # the noise is set by (a, b), not by a σ

    def corrupt(self, x0, level, eps):
        a = self.gain / 255.0
        # The protocol hands over one Gaussian draw; the Poisson draw is seeded from it, so a batch
        # stays a pure function of (seed, step) and the Gaussian part stays independent of it.
        seed = int(eps.flatten()[:64].double().mul(1e6).round().abs().sum()) % (2**62)
        g = torch.Generator(device=x0.device).manual_seed(seed)
        photons = torch.poisson((x0.float().clamp(min=0) / a), generator=g).to(x0.dtype)
        n = a * photons - x0 + (self.read / 255.0) * eps
        return x0 + n, n

    def to_dict(self) -> dict:
        return {"noise": self.kind, "gain": self.gain, "read": self.read}


@register_noise
@dataclass
class CorrelatedNoise(GaussianNoise):
    """Spatially correlated Gaussian noise (demosaicing, JPEG, resampled scans): white noise blurred by
    a Gaussian kernel of std `blur` pixels, rescaled so each pixel's std is still σ. Neighbouring
    pixels correlate by about exp(−1/(4·blur²)) (0.78 at blur 1)."""

    blur: float = 1.0
    kind: ClassVar[str] = "correlated"
    config_keys: ClassVar[frozenset[str]] = frozenset({"noise", "sigma", "blur"})

    @classmethod
    def from_dict(cls, d: dict) -> CorrelatedNoise:
        lo, hi = d.get("sigma", (5.0, 50.0))
        return cls(float(lo), float(hi), float(d.get("blur", 1.0)))

    @classmethod
    def config_problems(cls, d: dict) -> list[tuple[str, str]]:
        problems = GaussianNoise.config_problems(d)
        if not (_is_number(d.get("blur", 1.0)) and 0.3 <= d.get("blur", 1.0) <= 5):
            problems.append(("noise.blur", "a kernel std from 0.3 to 5 pixels"))
        return problems

    def _kernel(self, like: torch.Tensor) -> torch.Tensor:
        r = max(1, math.ceil(3 * self.blur))
        t = torch.arange(-r, r + 1, dtype=torch.float32, device=like.device)
        k1 = torch.exp(-t * t / (2 * self.blur * self.blur))
        k = k1[:, None] * k1[None, :]
        return (k / k.pow(2).sum().sqrt()).to(like.dtype)   # unit energy: white noise keeps unit variance

    def correlate(self, eps: torch.Tensor) -> torch.Tensor:
        """Unit white noise → unit-variance correlated noise of the same shape."""
        k = self._kernel(eps)
        c, r = eps.shape[1], k.shape[0] // 2
        padded = torch.nn.functional.pad(eps, (r, r, r, r), mode="reflect" if min(eps.shape[-2:]) > r else "replicate")
        return torch.nn.functional.conv2d(padded, k.expand(c, 1, *k.shape), groups=c)

    def corrupt(self, x0, level, eps):
        return super().corrupt(x0, level, self.correlate(eps))

    def to_dict(self) -> dict:
        return {"noise": self.kind, "sigma": [self.sigma_min, self.sigma_max], "blur": self.blur}
