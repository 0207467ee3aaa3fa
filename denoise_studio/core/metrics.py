"""Image quality metrics on [0, 1] images (peak 1, results clipped to [0, 1] first)."""
from __future__ import annotations

import math

import numpy as np
import torch


def psnr(estimate, reference) -> float:
    """PSNR in dB of `estimate` (clipped to [0, 1]) against `reference`; works on arrays or tensors."""
    if isinstance(estimate, torch.Tensor):
        mse = float(((estimate.clamp(0, 1) - reference) ** 2).mean())
    else:
        mse = float(np.mean((np.clip(estimate, 0, 1) - reference) ** 2, dtype=np.float64))
    return 99.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)


def psnr_batch(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of (B, C, H, W) tensors."""
    mse = ((estimate.clamp(0, 1) - reference) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def ssim(estimate: np.ndarray, reference: np.ndarray) -> float:
    """SSIM (scikit-image) of (H, W) or (H, W, C) arrays."""
    from skimage.metrics import structural_similarity
    est = np.clip(estimate, 0, 1).astype(np.float64)
    ref = reference.astype(np.float64)
    win = min(7, *[s - (1 - s % 2) for s in ref.shape[:2]])
    if win < 3:
        return float("nan")
    return float(structural_similarity(est, ref, data_range=1.0, win_size=win,
                                       channel_axis=2 if ref.ndim == 3 else None))
