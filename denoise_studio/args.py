"""Argument types and the parser shared by every sub-command: each number and path is checked
where it enters, and every bad value is one line on stderr with exit code 2."""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

EXIT_INVALID = 2   # every user error: one line on stderr, exit code 2
SEED_MAX = 2**63 - 1   # torch.manual_seed's range
MIN_TILE = 32   # smaller tiles cost one network call per few pixels (1×1 tiles: a million calls)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage dump is replaced by a pointer to --help.
    Sub-parsers inherit the class (add_subparsers defaults parser_class to type(self))."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shown(text: str, limit: int = 40) -> str:
    """A value as typed, cut short: a 5000-digit number must not become a 5000-character error."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:   # also Python's 4300-digit limit on int()
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not an integer") from None


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a finite number")
    return v


def _capped(v: int, cap_name: str) -> int:
    from denoise_studio.core.limits import CAPS, cap
    limit = cap(cap_name)
    if v > limit:
        raise argparse.ArgumentTypeError(f"{v:,} is over the limit of {limit:,} ({CAPS[cap_name][1]}); use less, "
                                         f"or raise the limit with DENOISE_STUDIO_MAX_{cap_name}=N")
    return v


class NoiseChoices:
    """The registered noise processes as argparse choices, looked up only when a value is checked or
    --help is shown: building the parser must not import torch."""

    def _names(self) -> tuple:
        from denoise_studio.core.noise import NOISE_PROCESSES
        return tuple(NOISE_PROCESSES)

    def __contains__(self, value) -> bool:
        return value in self._names()

    def __iter__(self):
        return iter(self._names())


def positive_int(text: str) -> int:
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{_shown(text)} must be at least 1")
    return v


def capped_int(cap_name: str):
    """A positive integer at most the limits.py cap `cap_name` (e.g. CROP, BATCH, STEPS, TIMESTEPS)."""
    def parse(text: str) -> int:
        return _capped(positive_int(text), cap_name)
    parse.__name__ = f"positive integer up to {cap_name}"
    return parse


threads = capped_int("THREADS")


def seed(text: str) -> int:
    v = _int(text)
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a seed: use 0 to 2**63-1")
    return v


def sigma(text: str) -> float:
    """A noise level on the 0–255 scale: finite and 0 < σ ≤ 255 (σ 0 has nothing to denoise and
    divides by zero in the baselines; above 255 the image is pure noise)."""
    v = _float(text)
    if not 0 < v <= 255:
        raise argparse.ArgumentTypeError(f"σ {_shown(text)} is out of range: give 0 < σ ≤ 255 (on the 0–255 scale)")
    return v


def unit_interval(text: str) -> float:
    """A finite number from 0 to 1 (a probability, DDIM's η)."""
    v = _float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is out of range: give a number from 0 to 1")
    return v


def tile(text: str) -> int:
    """-1 (the network's default), 0 (never tile) or a tile side from MIN_TILE to IMAGE_SIDE."""
    v = _int(text)
    if v in (-1, 0):
        return v
    if v < MIN_TILE:
        raise argparse.ArgumentTypeError(f"tile {_shown(text)} is too small: use 0 (no tiling) or at least {MIN_TILE}")
    return _capped(v, "IMAGE_SIDE")


def sigma_range(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split("-")] if "-" in text.strip("-") else [float(text)] * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a σ or a range like 5-50") from None
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1] <= 255 or parts[1] == 0:
        raise argparse.ArgumentTypeError(f"{_shown(text)}: give σ above 0 on the 0–255 scale, or LOW-HIGH with "
                                         "LOW ≤ HIGH and HIGH above 0")
    return parts[0], parts[1]


# ---------------------------------------------------------------- output paths

def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, what: str) -> None:
    """Create and remove a temp folder: the only check that sees read-only mounts, /proc and
    permissions the same way (root passes os.access where mkdir then fails)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".denoise-studio-probe-", dir=folder))
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{folder}: cannot write there ({e.strerror or e}); "
                                         f"choose another {what}") from None


def out_folder(text: str) -> Path:
    """A folder to write results into: an existing folder, or one that can be created. Nothing is
    created here; commands create it when they write their first result."""
    path = Path(text)
    if os.path.lexists(path) and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder; give a folder for the results")
    base = _nearest_existing(path.absolute())
    if not base.is_dir():
        raise argparse.ArgumentTypeError(f"{base} is a file, so {text} cannot be a folder; choose another --out")
    _probe_writable(base, "--out")
    return path


def out_file(text: str) -> Path:
    """A file to write: not a folder, in a folder that exists or can be created."""
    path = Path(text)
    if path.is_dir() or text.endswith(os.sep):
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name such as {Path(text) / 'model.onnx'}")
    if os.path.lexists(path) and not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a regular file; choose another --out")
    base = _nearest_existing(path.absolute().parent)
    if not base.is_dir():
        raise argparse.ArgumentTypeError(f"{base} is a file, so it cannot hold {path.name}; choose another --out")
    _probe_writable(base, "--out")
    return path


def print_error(message) -> None:
    """The CLI's one line for a user error (the message's own line breaks are folded)."""
    print("denoise-studio: error: " + " ".join(str(message).splitlines()), file=sys.stderr)
