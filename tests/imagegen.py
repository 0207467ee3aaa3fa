"""Tiny images generated for tests: smooth colour fields with edges, so denoising can be learned."""
import numpy as np
from PIL import Image

TINY_SPEC = {
    "format": "denoise-studio/architecture", "version": 1, "name": "tiny",
    "in_channels": 3, "predict": "noise", "conditioning": "none",
    "blocks": [
        {"type": "conv", "out_channels": 16, "norm": "none", "act": "relu"},
        {"type": "conv", "out_channels": 16, "norm": "group:4", "act": "relu"},
        {"type": "conv", "out_channels": 3, "norm": "none", "act": "none"},
    ],
}


def smooth_image(h=48, w=48, seed=0, channels=3) -> np.ndarray:
    """uint8 (h, w, channels): gradients plus a few flat shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (x * rng.uniform(0.5, 2) + y * rng.uniform(0.5, 2)) + p)
                    for p in rng.uniform(0, 6, channels)], axis=-1)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.1, 0.3)]
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 1, channels)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_folder(folder, n=6, size=48):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(smooth_image(size, size, seed=i)).save(folder / f"img_{i}.png")
    return folder
