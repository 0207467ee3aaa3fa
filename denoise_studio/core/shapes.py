"""`shapes`: a built-in data set a diffusion model learns in minutes on a CPU.

Each image is one flat-coloured disc, square or triangle on a plain background, 32×32, made
from a seed (no download, no files). `is_clean_shape` is the rule a sample must pass to count
as "one clean shape of one colour on a plain background" (bench/sampling.py scores with it).
"""
from __future__ import annotations

import numpy as np

SIZE = 32
KINDS = ("disc", "square", "triangle")
# Saturated shape colours and muted backgrounds, far apart so a shape never melts into its ground.
COLOURS = np.array([[230, 40, 40], [40, 160, 60], [40, 80, 220], [240, 200, 30], [160, 50, 200], [20, 190, 200]],
                   np.uint8)
BACKGROUNDS = np.array([[245, 245, 240], [30, 30, 35], [200, 200, 205], [90, 90, 100]], np.uint8)


def _mask(kind: str, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if kind == "disc":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if kind == "square":
        return (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
    # an upright isosceles triangle in the box [cy−r, cy+r] × [cx−r, cx+r]
    rel = (yy - (cy - r)) / (2 * r)
    return (rel >= 0) & (rel <= 1) & (np.abs(xx - cx) <= rel * r)


def make_shapes(n: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """n images, uint8 (n, 3, size, size)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), np.uint8)
    for i in range(n):
        kind = KINDS[rng.integers(len(KINDS))]
        r = rng.uniform(0.18, 0.32) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        img = np.broadcast_to(BACKGROUNDS[rng.integers(len(BACKGROUNDS))], (size, size, 3)).copy()
        img[_mask(kind, size, cy, cx, r)] = COLOURS[rng.integers(len(COLOURS))]
        out[i] = img.transpose(2, 0, 1)
    return out


def is_clean_shape(img: np.ndarray, tol: float = 0.12) -> bool:
    """True when an (3, H, W) [0, 1] image is one shape of one colour on a plain background.

    The background is the border's median colour and must be flat; the pixels far from it must be
    one connected, flat-coloured blob covering 3–40 % of the image, with few in-between (edge)
    pixels, whose fill of its bounding box is that of a disc, square or triangle."""
    from scipy import ndimage
    c, h, w = img.shape
    border = np.concatenate([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], axis=1)
    bg = np.median(border, axis=1)
    if np.abs(border - bg[:, None]).max(axis=0).mean() > tol / 2:
        return False
    dist = np.abs(img - bg[:, None, None]).max(axis=0)
    fg = dist > 0.25
    labels, count = ndimage.label(fg)
    if count == 0:
        return False
    sizes = np.bincount(labels.ravel())[1:]
    main = labels == (1 + int(np.argmax(sizes)))
    area = int(main.sum())
    if not 0.03 * h * w <= area <= 0.4 * h * w or area < 0.95 * fg.sum():
        return False
    core = ndimage.binary_erosion(main)
    if core.sum() < 4:
        return False
    colour = np.median(img[:, core], axis=1)
    if np.abs(img[:, core] - colour[:, None]).max(axis=0).mean() > tol:
        return False
    rest = ~ndimage.binary_dilation(main, iterations=1)
    if np.abs(img[:, rest] - bg[:, None]).max(axis=0).mean() > tol / 2:
        return False
    return _template_iou(main) >= 0.8


def _template_iou(mask: np.ndarray) -> float:
    """How well a blob matches the disc, square or triangle drawn in its bounding box (best IoU).
    Every kind is drawn in a square box, so a box far from square matches none."""
    ys, xs = np.nonzero(mask)
    h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
    if abs(h - w) > max(2, 0.15 * max(h, w)):
        return 0.0
    r = max(h, w) / 2
    cy, cx = ys.min() + h / 2, xs.min() + w / 2
    best = 0.0
    for kind in KINDS:
        t = _mask(kind, mask.shape[0], cy, cx, r)
        best = max(best, (t & mask).sum() / max((t | mask).sum(), 1))
    return float(best)

def shapes_imageset(n_train: int = 4096, n_val: int = 64, seed: int = 0):
    """The `shapes` training source: generated images held as uint8 tensors (6 MB)."""
    import torch

    from denoise_studio.core.data import ImageSet
    train = [torch.from_numpy(a) for a in make_shapes(n_train, seed)]
    val = [torch.from_numpy(a) for a in make_shapes(n_val, seed + 1)]
    return ImageSet(train, val, [], ["shapes"])
