"""Classical denoisers from scikit-image, run on the same noisy input as the network so the
learned denoiser is always shown against what it must beat. Each is given the true σ when
known (else the estimate), and tuned once on synthetic noise (see bench/)."""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage


def _hwc(chw: np.ndarray) -> np.ndarray:
    return np.clip(chw, 0, 1).transpose(1, 2, 0)


def gaussian(noisy, sigma):
    from skimage.filters import gaussian as g
    return g(_hwc(noisy), sigma=0.5 + 2.5 * sigma, channel_axis=2)


def median(noisy, sigma):
    size = 3 if sigma < 0.08 else 5
    return ndimage.median_filter(_hwc(noisy), size=(size, size, 1))


def nl_means(noisy, sigma):
    from skimage.restoration import denoise_nl_means
    return denoise_nl_means(_hwc(noisy), h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                            fast_mode=True, channel_axis=2)


def tv(noisy, sigma):
    from skimage.restoration import denoise_tv_chambolle
    return denoise_tv_chambolle(_hwc(noisy), weight=0.9 * sigma, channel_axis=2)


def wavelet(noisy, sigma):
    from skimage.restoration import denoise_wavelet
    return denoise_wavelet(_hwc(noisy), sigma=sigma, mode="soft", method="BayesShrink",
                           channel_axis=2, convert2ycbcr=noisy.shape[0] == 3, rescale_sigma=True)


BASELINES = {"gaussian": gaussian, "median": median, "nl-means": nl_means, "tv": tv, "wavelet": wavelet}


MIN_SIDE = 16   # the filters need a few pixels of context; thinner images are edge-padded


def run_baseline(name: str, noisy_chw: np.ndarray, sigma255: float) -> np.ndarray:
    """(C, H, W) noisy in, (C, H, W) denoised out, clipped to [0, 1]. σ ≤ 0 (e.g. the estimate
    for a flat image): nothing to remove, and TV's weight would divide by zero."""
    if not sigma255 > 0:
        return np.clip(noisy_chw, 0, 1).astype(np.float32)
    _, h, w = noisy_chw.shape
    padded = np.pad(noisy_chw, ((0, 0), (0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w))), mode="edge")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = BASELINES[name](padded, sigma255 / 255.0)
    out = np.asarray(out, dtype=np.float32).reshape(padded.shape[1], padded.shape[2], -1)
    return np.clip(out, 0, 1).transpose(2, 0, 1)[:, :h, :w]
