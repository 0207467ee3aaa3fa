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


# A timestep-conditioned network small enough to train in a second: for the sampling tests.
TINY_DDPM_SPEC = dict(TINY_SPEC, name="tiny-ddpm", conditioning="timestep", embedding_dim=8, blocks=[
    {"type": "conv", "out_channels": 8, "norm": "none", "act": "none"},
    {"type": "residual", "norm": "group:4", "act": "silu"},
    {"type": "conv", "out_channels": 3, "norm": "none", "act": "none"},
])


def train_tiny_run(folder, **noise):
    """A run folder holding the tiny DDPM spec trained 2 steps on shapes (`noise`: TrainConfig fields)."""
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.shapes import shapes_imageset
    from denoise_studio.core.spec import spec_from_dict
    from denoise_studio.core.trainer import TrainConfig, Trainer
    spec = spec_from_dict(TINY_DDPM_SPEC)
    cfg = TrainConfig(steps=2, batch_size=2, crop=16, eval_every=2, preview_every=2, checkpoint_every=2, **noise)
    result = Trainer(spec, cfg, run=RunFolder.create(folder, spec, cfg.to_dict()), images=shapes_imageset(8, 2)).run()
    assert result.name == "finished", result
    return folder
