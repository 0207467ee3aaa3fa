"""Argument types shared by every sub-command: each rejects a bad value in one line."""
from __future__ import annotations

import argparse

EXIT_INVALID = 2   # every user error: one line on stderr, exit code 2


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def sigma_range(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split("-")] if "-" in text.strip("-") else [float(text)] * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a σ or a range like 5-50") from None
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1] <= 255:
        raise argparse.ArgumentTypeError(f"{text!r}: give σ on the 0–255 scale, or LOW-HIGH with LOW ≤ HIGH")
    return parts[0], parts[1]
