"""Denoising images of any size with a trained (or untrained) network.

Images are reflect-padded to what the network needs and cropped back; large images go
through overlapping tiles blended with linear ramps, so memory stays bounded and no seam
shows. A real noisy photo has no known σ: it is estimated (scikit-image) when the network
needs to be told the noise level.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from denoise_studio.core.analysis import analyze, downsampling_factor, peak_inference_bytes
from denoise_studio.core.checkpoint import load_checkpoint, load_weights, resolve_checkpoint
from denoise_studio.core.devices import resolve_device
from denoise_studio.core.images import to_channels
from denoise_studio.core.limits import check_memory
from denoise_studio.core.metrics import psnr
from denoise_studio.core.network import build_network
from denoise_studio.core.noise import make_noise
from denoise_studio.core.spec import ArchitectureSpec

DEFAULT_TILE = 512
NOISE_SEED = 0   # synthetic noise is seeded, so every view of the same image and σ agrees


@dataclass
class LoadedModel:
    spec: ArchitectureSpec
    model: torch.nn.Module
    noise: object
    device: torch.device
    path: Path | None = None
    meta: dict | None = None

    @property
    def factor(self) -> int:
        return downsampling_factor(self.spec)

    @property
    def default_tile(self) -> int:
        """512, or smaller when attention's (H·W)² cost would dominate."""
        if any(b.get("type") == "attention" for b in self.spec.blocks):
            return min(DEFAULT_TILE, 64 * self.factor)
        return DEFAULT_TILE

    @functools.cached_property
    def overlap(self) -> int:
        """Tile overlap: the receptive field (so tiles agree), within [16, 128]. Computed once: the
        spec of a loaded model does not change, and every predict asks."""
        rf = analyze(self.spec, max(64, 4 * self.factor)).receptive_field
        o = 128 if math.isinf(rf) else int(min(128, max(16, rf)))
        return -(-o // self.factor) * self.factor


def _check_fits(lm: LoadedModel) -> None:
    """Refuse, before any weight is allocated, a network whose weights and activations at its
    default tile would not fit on the device (analysis knows both without building it)."""
    tile = lm.default_tile
    need = peak_inference_bytes(lm.spec, analyze(lm.spec, tile))
    check_memory(need, f"running this network on {tile}×{tile} tiles", "use a smaller network, or a device with "
                 "more memory.", lm.device)


def model_from_spec(spec: ArchitectureSpec, noise: dict | None = None, device="cpu") -> LoadedModel:
    dev = resolve_device(device) if isinstance(device, str) else device
    lm = LoadedModel(spec, None, make_noise(noise or {}), dev)
    _check_fits(lm)
    lm.model = build_network(spec).to(dev).eval()
    return lm


def load_model(run_or_checkpoint, device="auto") -> LoadedModel:
    """A trained network from a checkpoint: the file, its metadata, its spec and every tensor's
    shape are checked (load_checkpoint) and its memory estimated before the network is built."""
    path = resolve_checkpoint(run_or_checkpoint)
    ckpt = load_checkpoint(path)
    lm = LoadedModel(ckpt.spec, None, make_noise(ckpt.meta.get("noise", {})), resolve_device(device), path,
                     ckpt.meta)
    _check_fits(lm)
    model = build_network(lm.spec)
    load_weights(model, ckpt)
    lm.model = model.to(lm.device).eval()
    return lm


def add_noise(pixels: np.ndarray, sigma255: float, seed: int = 0) -> np.ndarray:
    """Clean [0, 1] pixels plus N(0, (σ/255)²), in float, unclipped (the published convention)."""
    rng = np.random.default_rng(seed)
    return (pixels + rng.standard_normal(pixels.shape).astype(np.float32) * (sigma255 / 255.0)).astype(np.float32)


def estimate_sigma255(chw: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma
    return float(estimate_sigma(np.clip(chw, 0, 1), channel_axis=0, average_sigmas=True)) * 255.0


def _pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _ramp(n: int, overlap: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float32)
    return torch.minimum(torch.ones(n), torch.minimum(i + 1, n - i) / (overlap + 1))


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


@torch.no_grad()
def predict(lm: LoadedModel, x: torch.Tensor, cond: torch.Tensor | None, tile: int | None = -1,
            overlap: int | None = None) -> torch.Tensor:
    """The network's output for network input x (C, H, W), tiled when larger than tile×tile
    (tile -1: the network's default, None or 0: never tile)."""
    c, h, w = x.shape
    tile = lm.default_tile if tile == -1 else tile
    f = lm.factor
    overlap = lm.overlap if overlap is None else overlap
    if tile:
        tile = max(f, tile // f * f)
        overlap = min(overlap, tile // 2)
    ph, pw = (-h) % f, (-w) % f
    if not tile or (h + ph <= tile and w + pw <= tile):
        xp = _pad(x[None], ph, pw)
        return lm.model(xp.to(lm.device), cond).float().cpu()[0, :, :h, :w]
    xp = _pad(x[None], max(0, tile - h), max(0, tile - w))[0]   # at least one tile in each direction
    H, W = xp.shape[1:]
    out = torch.zeros(c, H, W)
    weight = torch.zeros(1, H, W)
    win = _ramp(tile, overlap)[:, None] * _ramp(tile, overlap)[None, :]
    for y in _starts(H, tile, overlap):
        for x0 in _starts(W, tile, overlap):
            patch = xp[None, :, y:y + tile, x0:x0 + tile].to(lm.device)
            out[:, y:y + tile, x0:x0 + tile] += lm.model(patch, cond).float().cpu()[0] * win
            weight[:, y:y + tile, x0:x0 + tile] += win
    out /= weight   # in place: at 4096² every full-size copy is 200 MB
    return out[:, :h, :w]


@dataclass
class DenoiseResult:
    noisy: np.ndarray           # (C, H, W) the input as shown (the noisy image)
    noise: np.ndarray           # predicted noise in image units
    reconstruction: np.ndarray  # clipped to [0, 1]
    sigma255: float             # the noise level used (given or estimated)
    estimated: bool


def predict_ensemble(lm: LoadedModel, x: torch.Tensor, cond: torch.Tensor | None, tile: int | None = -1) -> torch.Tensor:
    """The mean of the network's outputs over the 8 flips and quarter turns of x (C, H, W),
    each mapped back: "×8 self-ensemble", 8× the time for a steadier estimate."""
    out = torch.zeros_like(x, dtype=torch.float32)
    for flip in (False, True):
        xf = x.flip(-1) if flip else x
        for k in range(4):
            y = torch.rot90(predict(lm, torch.rot90(xf, k, (-2, -1)), cond, tile), -k, (-2, -1))
            out += y.flip(-1) if flip else y
    return out.div_(8)


def denoise(lm: LoadedModel, noisy: np.ndarray, sigma255: float | None = None,
            tile: int | None = -1, ensemble: bool = False) -> DenoiseResult:
    """Denoise a (C, H, W) noisy image; σ (0–255) is estimated when not given.
    ensemble: average over the 8 flips and quarter turns (predict_ensemble)."""
    estimated = sigma255 is None
    if estimated:
        sigma255 = estimate_sigma255(noisy)
    level = torch.tensor([lm.noise.level_for_sigma(sigma255)], dtype=torch.float32)
    y = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))
    x = lm.noise.prepare(y[None], level)[0]
    cond = lm.noise.condition(level, lm.spec.conditioning)
    pred = (predict_ensemble if ensemble else predict)(lm, x, None if cond is None else cond.to(lm.device), tile)
    rec = lm.noise.reconstruct(x[None], pred[None], level)[0].clamp_(0, 1)
    noise = lm.noise.added_noise(pred[None], level)[0]
    return DenoiseResult(noisy, noise.numpy(), rec.numpy(), float(sigma255), estimated)


def psnr_sweep(model: LoadedModel, clean_chw: np.ndarray, sigmas=(5, 10, 15, 25, 35, 50, 75)) -> tuple:
    """The network's PSNR at each σ on a centre crop (≤ 128²) of the current image."""
    _, h, w = clean_chw.shape
    s = min(128, h, w)
    crop = clean_chw[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    out = []
    for sigma in sigmas:
        noisy = add_noise(crop, sigma, NOISE_SEED)
        out.append((psnr(noisy, crop), psnr(denoise(model, noisy, sigma).reconstruction, crop)))
    return list(sigmas), [o[0] for o in out], [o[1] for o in out]


@torch.no_grad()
def feature_maps(model: LoadedModel, pixels: np.ndarray, block: int, sigma255: float, max_channels: int = 32,
                 size: int = 128) -> np.ndarray:
    """A grid of the first channels of one block's activation for a centre crop of the image."""
    chw = to_channels(pixels, model.spec.in_channels)
    _, h, w = chw.shape
    s = max(model.factor, min(size, h, w) // model.factor * model.factor)
    crop = np.ascontiguousarray(chw[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])
    if crop.shape[1] < s or crop.shape[2] < s:
        crop = np.pad(crop, ((0, 0), (0, s - crop.shape[1]), (0, s - crop.shape[2])), mode="edge")
    noisy = torch.from_numpy(add_noise(crop, sigma255, NOISE_SEED))[None]
    level = torch.tensor([model.noise.level_for_sigma(sigma255)], dtype=torch.float32)
    x = model.noise.prepare(noisy, level).to(model.device)
    cond = model.noise.condition(level, model.spec.conditioning)
    captured = {}
    handle = model.model.blocks[block].register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    try:
        model.model(x, None if cond is None else cond.to(model.device))
    finally:
        handle.remove()
    act = captured["a"][0].float().cpu().numpy()[:max_channels]
    c, fh, fw = act.shape
    cols = int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / cols))
    grid = np.full((rows * (fh + 2), cols * (fw + 2)), np.nan, np.float32)
    for k in range(c):
        a = act[k]
        lo, hi = np.percentile(a, 1), np.percentile(a, 99)
        r, q = divmod(k, cols)
        grid[r * (fh + 2):r * (fh + 2) + fh, q * (fw + 2):q * (fw + 2) + fw] = (a - lo) / max(hi - lo, 1e-8)
    return np.nan_to_num(np.clip(grid, 0, 1), nan=0.0)
