"""The training plan: one definition of what a run does, used by the CLI and the app alike.

- `TrainConfig`: every setting with its default, and the one validating constructor
  (`from_dict`) through which settings from a user, a file or a checkpoint enter.
- `round_crop`: crops snap down to the network's downsampling factor.
- `cadences`: how often to evaluate, preview and checkpoint for a run of N steps.
- `new_run_dir`: a timestamped run folder under the runs folder.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.limits import cap

DEFAULT_STEPS = 2000   # a few CPU-minutes for the presets: enough to see a network learn


class ConfigError(DenoiseError):
    """A training setting of the wrong type or out of range."""


@dataclass
class TrainConfig:
    data: str = "builtin"            # a folder of images, or builtin
    steps: int = DEFAULT_STEPS       # the run's total; a resume continues up to it
    batch_size: int = 8              # global: split across torchrun processes (8 beat 16 per CPU-minute)
    crop: int = 64
    lr: float = 2e-3
    optimizer: str = "adamw"         # adam or adamw
    weight_decay: float = 0.0
    warmup: int = 50                 # steps of linear warm-up, then cosine decay to 1% of lr
    grad_clip: float = 1.0           # max gradient norm; 0 disables
    ema: float = 0.999               # decay of the weights' moving average, which checkpoints hold; 0 disables
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                # auto (bf16 on CUDA), off, bf16, fp16
    channels_last: bool | None = None   # None: on for CUDA
    compile: bool = False
    objective: str = "supervised"    # supervised, n2v or ne2ne (core/objectives.py)
    noise: str = "gaussian"          # a registered noise process (core/noise.py)
    sigma: tuple = (5.0, 50.0)       # gaussian and correlated σ range, 0–255 scale
    gain: float = 4.0                # poisson-gaussian: x = gain·Poisson(x₀/gain) + N(0, read²), 0–255 scale
    read: float = 10.0
    blur: float = 1.0                # correlated: std in pixels of the kernel that correlates the noise
    synthetic_noise: bool = False    # self-supervised: corrupt the (clean) images once (builtin data always is)
    schedule: str = "linear"         # ddpm: linear or cosine
    timesteps: int = 1000
    time_limit: float | None = None  # seconds; ends cleanly, the LR schedule follows it
    eval_every: int = 100
    preview_every: int = 100
    checkpoint_every: int = 200
    grad_norm_every: int = 10
    threads: int | None = None       # torch CPU threads (the GUI leaves itself a core)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sigma"] = list(self.sigma)
        return d

    @classmethod
    def from_dict(cls, d, source: str = "settings", required: tuple = ()) -> TrainConfig:
        """The one way settings become a TrainConfig: every field's type and range is checked and a
        bad one is refused naming the field and the fix. Unknown keys are ignored; a missing key
        takes its default unless it is in `required`."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source} must be an object of settings, not a {type(d).__name__}.")
        if required and "synthetic_noise" in d:   # written since objectives exist: the objective must be there
            required = (*required, "objective")
        missing = [k for k in required if k not in d]
        if missing:
            raise ConfigError(f"{source} lacks {', '.join(missing)}; it cannot be used without guessing.")
        values = {}
        for f in fields(cls):
            if f.name in d:
                values[f.name] = _check_field(f.name, d[f.name], source)
        return cls(**values)

    def validate(self) -> TrainConfig:
        """Check settings built in code or from arguments; returns a normalised copy."""
        return TrainConfig.from_dict(self.to_dict())

    def noise_dict(self) -> dict:
        """The settings of the chosen noise process (each process reads its own keys)."""
        from denoise_studio.core.noise import NOISE_PROCESSES
        every = {"noise": self.noise, "sigma": list(self.sigma), "schedule": self.schedule,
                 "timesteps": self.timesteps, "gain": self.gain, "read": self.read, "blur": self.blur}
        keys = NOISE_PROCESSES[self.noise].config_keys if self.noise in NOISE_PROCESSES else every.keys()
        return {k: v for k, v in every.items() if k in keys}

    def adds_noise(self) -> bool:
        """Whether the training images are clean and the noise process corrupts them: always for
        supervised; for a self-supervised objective only when asked (`synthetic_noise`), or for the
        builtin photos, which are clean. Otherwise the images are the noisy observations."""
        from denoise_studio.core.objectives import make_objective
        if not make_objective(self.objective).self_supervised:
            return True
        return self.synthetic_noise or self.data in ("builtin", "shapes")

    def problems(self, spec) -> list[str]:
        """Everything wrong with these settings for `spec`, one sentence each."""
        out = []
        for f in fields(self):
            try:
                _check_field(f.name, getattr(self, f.name), "")
            except ConfigError as e:
                out.append(str(e))
        if out:
            return out
        from denoise_studio.core.noise import NOISE_PROCESSES
        from denoise_studio.core.objectives import make_objective
        process = NOISE_PROCESSES[self.noise]
        out += [f"{where.replace('noise.', '')} must be {must}." for where, must in process.config_problems(
            self.noise_dict())]
        objective = make_objective(self.objective)
        if objective.self_supervised and process.has_timesteps:
            out.append(f"{self.objective} learns to denoise images, not diffusion timesteps; use --noise gaussian "
                       "(or another image noise) with it, or --objective supervised for ddpm.")
        if objective.self_supervised and self.noise == "correlated" and self.adds_noise():
            out.append(f"{self.objective} assumes noise independent from pixel to pixel: correlated noise would be "
                       "kept as signal; train correlated noise with --objective supervised.")
        from denoise_studio.core.objectives import objective_problems
        out += objective_problems(spec, self.objective, self.crop)
        factor = _factor(spec) * objective.crop_multiple
        if self.crop % factor:
            why = f"the network downsamples {int(math.log2(_factor(spec)))} times"
            if objective.crop_multiple > 1:
                why += f" and {self.objective} halves the crop"
            out.append(f"crop {self.crop} is not a multiple of {factor} ({why}); "
                       f"use {round_crop(self.crop, spec, objective.crop_multiple)}.")
        return out


# Keys a resume needs from config.json: without them the run could not continue as it was.
# `objective` joins them for configs written since objectives exist (they carry `synthetic_noise`);
# a run made before was supervised, the default, and resumes as such.
RESUME_REQUIRED = ("data", "steps", "batch_size", "crop", "lr", "seed", "noise", "sigma", "schedule", "timesteps")

_CHOICES = {"optimizer": ("adam", "adamw"), "amp": ("auto", "off", "bf16", "fp16"),
            "noise": (), "objective": (), "schedule": ("linear", "cosine")}   # noise, objective: the registries'
                                                                              # names, looked up when checked
# name -> (lowest, highest or a cap name, example)
_INTS: dict[str, tuple[int, int | str, int]] = {
    "steps": (1, "STEPS", 2000), "batch_size": (1, "BATCH", 8), "crop": (1, "CROP", 64),
    "warmup": (0, "STEPS", 50), "seed": (0, 2**63 - 1, 0), "timesteps": (2, "TIMESTEPS", 1000),
         "eval_every": (1, "STEPS", 100), "preview_every": (1, "STEPS", 100),
         "checkpoint_every": (1, "STEPS", 200), "grad_norm_every": (1, "STEPS", 10), "threads": (1, "THREADS", 2)}
_FLOATS: dict[str, tuple[bool, float, float]] = {   # (zero allowed, highest, example)
    "lr": (False, 10.0, 0.002), "weight_decay": (True, 10.0, 0.0), "grad_clip": (True, 1e6, 1.0),
    "time_limit": (False, 10 * 365 * 86400, 600), "gain": (False, 255.0, 4.0), "read": (True, 255.0, 10.0),
    "blur": (False, 5.0, 1.0), "ema": (True, 0.99999, 0.999)}
_OPTIONAL = {"channels_last", "threads", "time_limit"}


def _check_field(name: str, v, source: str):
    """v, normalised, or ConfigError naming the field, the value and the fix."""
    where = f"{source}: " if source else ""
    shown = repr(v)
    if len(shown) > 60:   # a 5000-digit number must not become a 5000-character message
        shown = shown[:60] + "…"
    if v is None and name in _OPTIONAL:
        return None
    if name in _INTS:
        lo, top, example = _INTS[name]
        hi = cap(top) if isinstance(top, str) else int(top)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"{where}{name} is {shown}; it must be a whole number from {lo:,} to {hi:,} "
                              f"(e.g. {example}).")
        return v
    if name in _FLOATS:
        zero_ok, highest, sample = _FLOATS[name]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
            (v >= 0 if zero_ok else v > 0) and v <= highest
        if not ok:
            lowest = "at least 0" if zero_ok else "above 0"
            raise ConfigError(f"{where}{name} is {shown}; it must be a number {lowest} and at most {highest:g} "
                              f"(e.g. {sample}).")
        return float(v)
    if name in _CHOICES:
        choices = _CHOICES[name]
        if name == "noise":   # imported here: plan stays free of torch until a run is checked
            from denoise_studio.core.noise import NOISE_PROCESSES
            choices = tuple(NOISE_PROCESSES)
        elif name == "objective":
            from denoise_studio.core.objectives import OBJECTIVES
            choices = tuple(OBJECTIVES)
        if v not in choices:
            raise ConfigError(f"{where}{name} is {shown}; use one of {', '.join(choices)}.")
        return v
    if name in ("channels_last", "compile", "synthetic_noise"):
        if not isinstance(v, bool):
            raise ConfigError(f"{where}{name} is {shown}; it must be true or false.")
        return v
    if name in ("data", "device"):
        if not isinstance(v, str) or not v or "\0" in v:
            raise ConfigError(f"{where}{name} is {shown}; it must be a non-empty string "
                              f"(e.g. {'builtin' if name == 'data' else 'auto'}).")
        return v
    if name == "sigma":
        ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v) \
            and 0 <= v[0] <= v[1] <= 255 and v[1] > 0   # σ 0 throughout: nothing to learn to remove
        if not ok:
            raise ConfigError(f"{where}sigma is {shown}; it must be a [low, high] pair with 0 ≤ low ≤ high ≤ 255 "
                              "and high above 0 (e.g. [5, 50]).")
        return (float(v[0]), float(v[1]))
    return v


def _factor(spec) -> int:
    from denoise_studio.core.analysis import downsampling_factor
    return downsampling_factor(spec)


def round_crop(crop: int, spec, multiple: int = 1) -> int:
    """The largest multiple of the network's downsampling factor (times `multiple`: 2 for an objective
    that trains on half-size sub-images) not above crop (at least one factor)."""
    factor = _factor(spec) * multiple
    return max(factor, crop // factor * factor)


# What a data source trains best with, where it differs from TrainConfig's defaults. `shapes` is
# for sampling: the DDPM process with a cosine schedule on whole 32×32 images (bench/sampling.py).
RECIPES: dict[str, dict] = {
    "shapes": {"noise": "ddpm", "schedule": "cosine", "timesteps": 1000, "crop": 32, "batch_size": 32,
               "lr": 2e-3, "steps": 10_000},   # 12.4 min on 2 cores with bf16 (bench/sampling.py)
}
RECOMMENDED_PRESET = {"shapes": "shapes-unet"}   # others: unet-small


def recipe(data: str) -> dict:
    """The settings the plan recommends for a data source (empty: the defaults apply)."""
    return dict(RECIPES.get(str(data), {}))


def cadences(steps: int) -> dict:
    """Evaluation, preview and checkpoint intervals for a run of `steps`: about 20 evaluations,
    40 previews and 10 checkpoints, within bounds that keep short runs informative and long
    runs cheap."""
    return {"eval_every": max(10, min(100, steps // 20)),
            "preview_every": max(10, min(50, steps // 40)),
            "checkpoint_every": max(50, min(500, steps // 10))}


def default_runs_dir() -> Path:
    return Path(os.environ.get("DENOISE_STUDIO_RUNS") or Path.home() / "DenoiseStudio" / "runs")


def new_run_dir(spec_name: str, runs_dir: Path | None = None) -> Path:
    """A new folder name under the runs folder: the network's name and the local time."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec_name)[:60] or "run"
    run_dir = runs_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while run_dir.exists():
        run_dir = run_dir.with_name(f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    return run_dir
