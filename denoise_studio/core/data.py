"""Training data: a folder of images (or `builtin`), random crops and flips, a fixed
held-out validation set.

Every batch is a pure function of (seed, step): resuming at step N draws exactly the crops
and noise a run that never stopped would have drawn, with no RNG state to save.
"""
from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from denoise_studio.core.errors import DataError, ImageError
from denoise_studio.core.images import IMAGE_SUFFIXES, check_channels, load_image, to_channels

# scikit-image ships these with the package: the first run trains with no download.
BUILTIN_TRAIN = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                 "brick", "grass", "gravel", "moon", "coins")
BUILTIN_VAL = ("chelsea", "camera")
VAL_SIGMA = 25.0   # validation PSNR is always measured at σ = 25 (0–255 scale)


def scan_images(folder) -> tuple[list[Path], list[str]]:
    """(image files under `folder`, recursively, sorted; messages for the entries skipped).

    Entries are only stat'ed, never opened: a FIFO, socket, device or broken link with an
    image's name is skipped with a message (opening a FIFO blocks forever). No symlink loops."""
    folder = Path(folder)
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise DataError(f"{folder}: no such folder; give a folder of images or `builtin`.") from None
    except OSError as e:
        raise DataError(f"{folder}: cannot read it ({e.strerror or e}); give a folder of images or `builtin`.") \
            from None
    if stat.S_ISREG(st.st_mode):
        return [folder], []
    if not stat.S_ISDIR(st.st_mode):
        raise DataError(f"{folder} is not a folder or an image file (a pipe, socket or device); "
                        "give a folder of images or `builtin`.")
    found, skipped = [], []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            path = Path(root) / name
            try:
                mode = os.stat(path).st_mode
            except OSError as e:
                skipped.append(f"{path}: {'a broken link' if os.path.islink(path) else 'cannot read it'} "
                               f"({e.strerror or e}).")
                continue
            if stat.S_ISREG(mode):
                found.append(path)
            elif not stat.S_ISDIR(mode):   # a symlink to a folder is not an image either, but not news
                skipped.append(f"{path} is not a regular file (a pipe, socket or device).")
    return found, skipped


def find_images(folder) -> list[Path]:
    """Image files under `folder` (see scan_images; the skipped entries are dropped)."""
    return scan_images(folder)[0]


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
    _sigmas: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def sigmas(self, which: str) -> list[float]:
        """Estimated noise σ (0–255) of each "train" or "val" image, computed once: the CLI checks a
        folder before the run starts and the trainer then uses the same numbers."""
        if which not in self._sigmas:
            self._sigmas[which] = estimated_sigmas(getattr(self, which))
        return self._sigmas[which]

    @staticmethod
    def _tensor(pixels: np.ndarray, channels: int, bit_depth: int) -> torch.Tensor:
        t = torch.from_numpy(to_channels(pixels, channels))
        return (t * 255).round().to(torch.uint8) if bit_depth == 8 else t

    @classmethod
    def load(cls, source, channels: int = 3, val_fraction: float = 0.1) -> ImageSet:
        try:
            check_channels(channels)
        except ImageError as e:
            raise DataError(str(e)) from None
        if str(source) == "shapes":   # generated coloured shapes, for diffusion sampling (core/shapes.py)
            from denoise_studio.core.shapes import shapes_imageset
            return shapes_imageset()
        if str(source) == "builtin":
            train = [cls._tensor(_builtin(n), channels, 8) for n in BUILTIN_TRAIN]
            val = [cls._tensor(_builtin(n), channels, 8) for n in BUILTIN_VAL]
            return cls(train, val, [], list(BUILTIN_TRAIN))
        paths, skipped = scan_images(source)
        entries = len(paths) + len(skipped)
        images, names = [], []
        for p in paths:
            try:
                im = load_image(p)
            except ImageError as e:
                skipped.append(str(e))
                continue
            images.append(cls._tensor(im.pixels, channels, im.bit_depth))
            names.append(str(p))
        if not images:
            why = f"none of its {entries} image file(s) could be read" if entries else "it holds no image files"
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
    return sample_crops(images, batch, crop, gen)[0]


def sample_crops(images: list[torch.Tensor], batch: int, crop: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """sample_batch's crops and, for each, the index of the image it came from."""
    drawn = torch.randint(0, len(images), (batch,), generator=gen)
    idx = drawn.tolist()
    flips = torch.randint(0, 2, (batch, 2), generator=gen).tolist()
    out = []
    for i, (fh, fv) in zip(idx, flips, strict=True):
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
    return torch.stack(out), drawn


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


# ---------------------------------------------------------------- noisy observations (self-supervised)

CLEAN_SIGMA = 2.0   # median estimated σ (0–255) below which a folder looks clean (clean CBSD68: 0.8–8, median ≈ 1.7)
SIGMA_SIDE = 512    # σ is estimated on a centre crop: enough pixels, bounded time on large photos


def estimated_sigmas(images: list[torch.Tensor]) -> list[float]:
    """Each image's noise σ on the 0–255 scale (wavelet estimate on a centre crop)."""
    from denoise_studio.core.inference import estimate_sigma255
    out = []
    for img in images:
        _, h, w = img.shape
        y, x = max(0, (h - SIGMA_SIDE) // 2), max(0, (w - SIGMA_SIDE) // 2)
        out.append(estimate_sigma255(_as_float(img[:, y:y + SIGMA_SIDE, x:x + SIGMA_SIDE]).numpy()))
    return out


def check_observations(source, sigmas: list[float], objective: str, count: int) -> list[str]:
    """A self-supervised objective learns from the noise the images already have: refuse (DataError)
    a folder that looks clean; return one-line notes for one image and for mixed noise levels."""
    median = float(np.median(sigmas))
    if median < CLEAN_SIGMA:
        raise DataError(f"{source}: the images look clean (median estimated noise σ {median:.1f} on 0–255), and "
                        f"{objective} learns only from noise the images already have; add synthetic noise with "
                        "--noise gaussian --sigma 25, or train with --objective supervised.")
    notes = []
    if count == 1:
        notes.append(f"one image: {objective} trains on random crops of it and validates on its centre crops.")
    lo, hi = np.percentile(sigmas, [10, 90]) if len(sigmas) > 1 else (median, median)
    if hi > 2 * lo and hi - lo > 5:
        notes.append(f"the images' estimated noise σ ranges from {lo:.0f} to {hi:.0f} (0–255): one network is "
                     "trained for all of them, which may leave the noisiest under-smoothed; training anyway.")
    return notes
