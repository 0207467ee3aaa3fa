"""What a command may cost, decided before anything is allocated.

Two kinds of limit:
- documented caps (sizes of files, counts, numbers a user types), each overridable with an
  environment variable `DENOISE_STUDIO_MAX_<NAME>` for the rare person who needs more;
- memory: an estimate of what an operation needs, checked against what this process can
  really get (available RAM, an address-space rlimit, free GPU memory).

Every refusal is a `LimitError`: one sentence naming the limit and how to raise it.
"""
from __future__ import annotations

import os
import resource

from denoise_studio.core.errors import DenoiseError

# name -> (default, what it bounds). README "Limits" lists these.
CAPS = {
    "SPEC_BYTES": (4 * 2**20, "size of an architecture spec file"),
    "METADATA_BYTES": (64 * 2**20, "size of a checkpoint's metadata header"),
    "CHECKPOINT_BYTES": (4 * 2**30, "size of a checkpoint file"),
    "CONFIG_BYTES": (4 * 2**20, "size of a run folder's config.json"),
    "IMAGE_BYTES": (2 * 2**30, "size of an image file"),
    "BLOCKS": (1000, "blocks in one network"),
    "CHANNELS": (4096, "channels of one block"),
    "KERNEL": (31, "convolution kernel size"),
    "PARAMS": (200_000_000, "parameters of one network"),
    "IMAGE_SIDE": (65_536, "width or height of an image, in pixels"),
    "IMAGE_PIXELS": (120_000_000, "pixels of an image"),
    "CROP": (4096, "training crop size"),
    "BATCH": (4096, "training batch size"),
    "STEPS": (100_000_000, "training steps"),
    "TIMESTEPS": (100_000, "DDPM timesteps"),
    "THREADS": (1024, "CPU threads"),
    "SAMPLES": (4096, "images sampled at once"),
    "SCALE": (16, "enlargement of a sample grid"),
}
MEMORY_FRACTION = 0.8   # of what is available: leave the rest to the OS and the window


class LimitError(DenoiseError):
    """An input or setting over a documented cap, or an operation that would not fit in memory."""


def cap(name: str) -> int:
    """The cap in force: the default, or DENOISE_STUDIO_MAX_<NAME> when set to a positive integer."""
    default, _ = CAPS[name]
    raw = os.environ.get(f"DENOISE_STUDIO_MAX_{name}")
    if raw:
        try:
            value = int(raw)
            if value > 0:
                return value
        except ValueError:
            pass
    return default


def check_cap(name: str, value, what: str | None = None) -> None:
    """Raise LimitError when value exceeds the cap `name`."""
    limit = cap(name)
    if value > limit:
        what = what or CAPS[name][1]
        raise LimitError(f"{what} is {value:,}, over the limit of {limit:,}; use less, or raise the limit "
                         f"with DENOISE_STUDIO_MAX_{name}=N.")


def available_memory(device=None) -> int:
    """Bytes this process can still allocate on `device` (a torch.device, "cpu" or None for CPU)."""
    kind = getattr(device, "type", device) or "cpu"
    if kind == "cuda":
        import torch
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    avail = _meminfo_available()
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        avail = min(avail, max(0, soft - _address_space_used()))
    return avail


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _address_space_used() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_memory(needed: int, what: str, fix: str, device=None) -> None:
    """Refuse, in one line, an operation estimated to need more than MEMORY_FRACTION of what is
    available. `fix` says how to need less (a smaller tile, batch, crop, network)."""
    have = int(available_memory(device) * MEMORY_FRACTION)
    if needed > have:
        where = "GPU memory" if getattr(device, "type", device) == "cuda" else "memory"
        raise LimitError(f"{what} would need about {_gib(needed)} of {where}, but only {_gib(have)} is available; "
                         f"{fix}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
