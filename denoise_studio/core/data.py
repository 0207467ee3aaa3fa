"""Training data: a folder of images (or `builtin`), random crops and flips, a fixed
held-out validation set.

Every batch is a pure function of (seed, step): resuming at step N draws exactly the crops
and noise a run that never stopped would have drawn, with no RNG state to save.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from denoise_studio.core.errors import DataError, ImageError
from denoise_studio.core.images import IMAGE_SUFFIXES, load_image, to_channels

# scikit-image ships these with the package: the first run trains with no download.
BUILTIN_TRAIN = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                 "brick", "grass", "gravel", "moon", "coins")
BUILTIN_VAL = ("chelsea", "camera")
VAL_SIGMA = 25.0   # validation PSNR is always measured at σ = 25 (0–255 scale)


def find_images(folder) -> list[Path]:
    """Image files under `folder`, recursively, sorted; follows no symlink loops."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder; give a folder of images or `builtin`.")
    if folder.is_file():
        return [folder]
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        found += [Path(root) / f for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
    return found


def _builtin(name: str) -> np.ndarray:
    import skimage.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = getattr(skimage.data, name)()
    return a.astype(np.float32) / 255.0


@dataclass
class ImageSet:
    """Images held in memory as (C, H, W) tensors (uint8 when 8-bit, to save memory)."""
    train: list[torch.Tensor]
    val: list[torch.Tensor]
    skipped: list[str] = field(default_factory=list)   # one message per unreadable file
    names: list[str] = field(default_factory=list)

    @staticmethod
    def _tensor(pixels: np.ndarray, channels: int, bit_depth: int) -> torch.Tensor:
        t = torch.from_numpy(to_channels(pixels, channels))
        return (t * 255).round().to(torch.uint8) if bit_depth == 8 else t

    @classmethod
    def load(cls, source, channels: int = 3, val_fraction: float = 0.1) -> ImageSet:
        if str(source) == "builtin":
            train = [cls._tensor(_builtin(n), channels, 8) for n in BUILTIN_TRAIN]
            val = [cls._tensor(_builtin(n), channels, 8) for n in BUILTIN_VAL]
            return cls(train, val, [], list(BUILTIN_TRAIN))
        paths = find_images(source)
        images, names, skipped = [], [], []
        for p in paths:
            try:
                im = load_image(p)
            except ImageError as e:
                skipped.append(str(e))
                continue
            images.append(cls._tensor(im.pixels, channels, im.bit_depth))
            names.append(str(p))
        if not images:
            why = f"none of its {len(paths)} image file(s) could be read" if paths else "it holds no image files"
            raise DataError(f"{source}: {why} (PNG, JPEG, TIFF, BMP, WebP); choose another folder or `builtin`.")
        n_val = max(1, round(len(images) * val_fraction)) if len(images) >= 5 else 0
        # Hold out every k-th image so the split does not depend on folder order quirks.
        val_idx = set(np.linspace(0, len(images) - 1, n_val).round().astype(int).tolist()) if n_val else set()
        train = [im for i, im in enumerate(images) if i not in val_idx]
        val = [im for i, im in enumerate(images) if i in val_idx] or images[:1]
        return cls(train, val, skipped, names)


def _as_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255.0 if t.dtype == torch.uint8 else t


def _fit(img: torch.Tensor, crop: int) -> torch.Tensor:
    """Pad an image smaller than the crop (replicate) so any crop fits."""
    _, h, w = img.shape
    if h >= crop and w >= crop:
        return img
    return F.pad(_as_float(img)[None], (0, max(0, crop - w), 0, max(0, crop - h)), mode="replicate")[0]


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 131 + rank)


def sample_batch(images: list[torch.Tensor], batch: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """Random crops with random horizontal/vertical flips, (B, C, crop, crop) float in [0, 1]."""
    idx = torch.randint(0, len(images), (batch,), generator=gen).tolist()
    flips = torch.randint(0, 2, (batch, 2), generator=gen).tolist()
    out = []
    for i, (fh, fv) in zip(idx, flips):
        img = _fit(images[i], crop)
        _, h, w = img.shape
        y = int(torch.randint(0, h - crop + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - crop + 1, (1,), generator=gen))
        c = _as_float(img[:, y:y + crop, x:x + crop])
        if fh:
            c = c.flip(2)
        if fv:
            c = c.flip(1)
        out.append(c)
    return torch.stack(out)


def validation_crops(images: list[torch.Tensor], crop: int, count: int = 8) -> torch.Tensor:
    """Fixed centre crops (and quarter-offset crops when few images) for evaluation."""
    out = []
    for img in images:
        img = _as_float(_fit(img, crop))
        _, h, w = img.shape
        for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.25, 0.75), (0.75, 0.25)):
            y, x = int((h - crop) * fy), int((w - crop) * fx)
            out.append(img[:, y:y + crop, x:x + crop])
            if len(out) >= count:
                return torch.stack(out)
    return torch.stack(out)
