"""Denoising images of any size with a trained (or untrained) network.

Images are reflect-padded to what the network needs and cropped back; large images go
through overlapping tiles blended with linear ramps, so memory stays bounded and no seam
shows. A real noisy photo has no known σ: it is estimated (scikit-image) when the network
needs to be told the noise level.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from denoise_studio.core import limits
from denoise_studio.core.analysis import analyze, downsampling_factor, peak_inference_bytes
from denoise_studio.core.blocks import BLOCK_TYPES, block_type_name
from denoise_studio.core.checkpoint import load_checkpoint, load_weights, resolve_checkpoint
from denoise_studio.core.devices import resolve_device
from denoise_studio.core.images import to_channels
from denoise_studio.core.limits import check_memory
from denoise_studio.core.metrics import psnr
from denoise_studio.core.network import build_network
from denoise_studio.core.noise import GaussianNoise, NoiseProcess, make_noise
from denoise_studio.core.spec import ArchitectureSpec

DEFAULT_TILE = 512
NOISE_SEED = 0   # synthetic noise is seeded, so every view of the same image and σ agrees


@dataclass
class LoadedModel:
    spec: ArchitectureSpec
    model: torch.nn.Module
    noise: NoiseProcess
    device: torch.device
    path: Path | None = None
    meta: dict | None = None

    @property
    def factor(self) -> int:
        return downsampling_factor(self.spec)

    @property
    def default_tile(self) -> int:
        """512, or smaller when attention's (H·W)² cost would dominate."""
        if any(t is not None and BLOCK_TYPES[t].global_field for t in map(block_type_name, self.spec.blocks)):
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
    lm = LoadedModel(spec, None, make_noise(noise or {}), dev)  # type: ignore[arg-type]  # built once it fits
    _check_fits(lm)
    lm.model = build_network(spec).to(dev).eval()
    return lm


def load_model(run_or_checkpoint, device="auto") -> LoadedModel:
    """A trained network from a checkpoint: the file, its metadata, its spec and every tensor's
    shape are checked (load_checkpoint) and its memory estimated before the network is built."""
    path = resolve_checkpoint(run_or_checkpoint)
    ckpt = load_checkpoint(path)
    assert ckpt.spec is not None   # load_checkpoint refuses a checkpoint without one
    lm = LoadedModel(ckpt.spec, None, make_noise(ckpt.meta.get("noise", {})),  # type: ignore[arg-type]
                     resolve_device(device), path, ckpt.meta)
    _check_fits(lm)
    model = build_network(lm.spec)
    load_weights(model, ckpt)
    lm.model = model.to(lm.device).eval()
    return lm


def add_noise(pixels: np.ndarray, sigma255: float, seed: int = 0) -> np.ndarray:
    """Clean [0, 1] pixels plus N(0, (σ/255)²), in float, unclipped (the published convention).
    float32 throughout and in place: one image-sized temporary, never a float64 one."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    noise *= np.float32(sigma255 / 255.0)
    noise += pixels
    return noise


def add_process_noise(noise: NoiseProcess, pixels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Clean (C, H, W) pixels corrupted once by a noise process, seeded: the same image and seed always
    get the same noise. Gaussian noise of one σ is add_noise's, so earlier results stay comparable."""
    if isinstance(noise, GaussianNoise) and type(noise) is GaussianNoise and noise.sigma_min == noise.sigma_max:
        return add_noise(pixels, noise.sigma_min, seed)
    g = torch.Generator().manual_seed(seed)
    level = noise.sample_levels(1, g)
    clean = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None]
    x, _ = noise.corrupt(clean, level, torch.randn(clean.shape, generator=g))
    return noise.display_noisy(x, level)[0].numpy()


def estimate_sigma255(chw: np.ndarray) -> float:
    """The noise σ (0–255) of a real photo, from its finest wavelet details (scikit-image).
    A flat image, or one too small for the estimate, has no measurable noise: 0, never NaN."""
    from skimage.restoration import estimate_sigma
    if chw.size == 0 or float(np.ptp(chw)) == 0.0:
        return 0.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        sigma = float(estimate_sigma(np.clip(chw, 0, 1), channel_axis=0, average_sigmas=True)) * 255.0
    return sigma if math.isfinite(sigma) else 0.0


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


@dataclass
class TilePlan:
    """How predict covers an image: padded to a multiple of the network's factor only (never
    to a whole tile: a 65535×1 image stays 4 rows high), then tiles of th×tw, each at most
    tile² pixels."""
    h: int
    w: int
    H: int          # padded size
    W: int
    th: int         # tile size; th == H and tw == W: one pass, no tiling
    tw: int
    overlap: int
    ys: list
    xs: list

    @property
    def tiled(self) -> bool:
        return len(self.ys) * len(self.xs) > 1


def plan_tiles(lm: LoadedModel, h: int, w: int, tile: int | None = -1, overlap: int | None = None) -> TilePlan:
    """tile -1: the network's default, None or 0: never tile."""
    f = lm.factor
    tile = lm.default_tile if tile == -1 else tile
    H, W = h + (-h) % f, w + (-w) % f
    if not tile:
        return TilePlan(h, w, H, W, H, W, 0, [0], [0])
    tile = max(f, tile // f * f)
    overlap = min(lm.overlap if overlap is None else overlap, tile // 2)
    th, tw = min(tile, H), min(tile, W)
    # A thin image gets long tiles of the same area: a 60000×1 strip in 512×1 tiles would be 120
    # network calls of a few hundred pixels each, where one call of the same memory suffices.
    if tw < tile:
        th = min(H, max(tile, tile * tile // tw // f * f))
    elif th < tile:
        tw = min(W, max(tile, tile * tile // th // f * f))
    return TilePlan(h, w, H, W, th, tw, overlap, _starts(H, th, overlap), _starts(W, tw, overlap))


def network_bytes(lm: LoadedModel, h: int, w: int) -> int:
    """Activation memory of one forward pass at h×w (batch 1, fp32), from the spec's analysis:
    every block's output (a bound: without grad not all live at once), plus each attention
    block's (H·W)² score matrix per head, the cost that grows fastest."""
    s0 = max(64, 4 * lm.factor)
    a = analyze(lm.spec, s0)
    scale = h * w / (s0 * s0)
    total = int(a.activation_bytes * scale)
    for b, block in zip(a.blocks, lm.spec.blocks, strict=True):
        t = block_type_name(block)
        if t is not None:
            total += BLOCK_TYPES[t].extra_bytes(block, b.input_shape[1] * b.input_shape[2] * scale)
    return total


def _on_cpu(lm: LoadedModel) -> bool:
    return getattr(lm.device, "type", str(lm.device)) == "cpu"


def predict_bytes(lm: LoadedModel, c: int, h: int, w: int, tile: int | None = -1) -> tuple[int, int]:
    """(host bytes, device bytes) predict will allocate for a (c, h, w) input. Host: padded copies,
    the blended output and its weights when tiled. Device: one tile in and out, and the network's
    activations for it (on a CPU model both are host memory)."""
    plan = plan_tiles(lm, h, w, tile)
    image = 4 * c * plan.H * plan.W
    host = 3 * image + 4 * plan.H * plan.W if plan.tiled else 2 * image
    return host, 2 * 4 * c * plan.th * plan.tw + network_bytes(lm, plan.th, plan.tw)


IMAGE_COPIES = 12   # float32 copies of an image around a prediction: noisy, prepared, output, noise, saving


def _denoise_cost(lm: LoadedModel, h: int, w: int, tile, ensemble: bool) -> tuple[int, int]:
    c = lm.spec.in_channels
    extra = 2 * 4 * c * h * w if ensemble else 0   # a turned copy and the running mean
    host, device = predict_bytes(lm, c, h, w, tile)
    return IMAGE_COPIES * 4 * c * h * w + extra + host, device


def denoise_bytes(lm: LoadedModel, h: int, w: int, tile: int | None = -1, ensemble: bool = False) -> int:
    """Host memory for denoising an h×w image end to end (checked before it is decoded); on a
    CPU model this includes the network's activations."""
    host, device = _denoise_cost(lm, h, w, tile, ensemble)
    return host + (device if _on_cpu(lm) else 0)


def _check(lm: LoadedModel, host: int, device: int, what: str, fix: str) -> None:
    if _on_cpu(lm):
        limits.check_memory(host + device, what, fix)
    else:
        limits.check_memory(host, what, fix)
        limits.check_memory(device, what, fix, lm.device)


def _describe(lm: LoadedModel, h: int, w: int, tile) -> str:
    plan = plan_tiles(lm, h, w, tile)
    return f"denoising {w}×{h} in {plan.tw}×{plan.th} tiles" if plan.tiled else f"denoising {w}×{h} in one pass"


TILE_FIX = "use a smaller --tile (the default tiles large images), or crop the image."


def check_denoise_memory(lm: LoadedModel, h: int, w: int, tile: int | None = -1, ensemble: bool = False) -> None:
    """Refuse (LimitError) a denoise that would not fit, before anything is allocated."""
    _check(lm, *_denoise_cost(lm, h, w, tile, ensemble), _describe(lm, h, w, tile), TILE_FIX)


@torch.no_grad()
def predict(lm: LoadedModel, x: torch.Tensor, cond: torch.Tensor | None, tile: int | None = -1,
            overlap: int | None = None) -> torch.Tensor:
    """The network's output for network input x (C, H, W), tiled when larger than tile×tile
    (tile -1: the network's default, None or 0: never tile). Refuses, before allocating, a
    plan that would not fit in memory (LimitError)."""
    c, h, w = x.shape
    plan = plan_tiles(lm, h, w, tile, overlap)
    _check(lm, *predict_bytes(lm, c, h, w, tile), _describe(lm, h, w, tile), TILE_FIX)
    xp = _pad(x[None], plan.H - h, plan.W - w)
    if not plan.tiled:
        return lm.model(xp.to(lm.device), cond).float().cpu()[0, :, :h, :w]
    xp = xp[0]
    th, tw = plan.th, plan.tw
    out = torch.zeros(c, plan.H, plan.W)
    weight = torch.zeros(1, plan.H, plan.W)
    win = _ramp(th, plan.overlap)[:, None] * _ramp(tw, plan.overlap)[None, :]
    for y in plan.ys:
        for x0 in plan.xs:
            patch = xp[None, :, y:y + th, x0:x0 + tw].to(lm.device)
            out[:, y:y + th, x0:x0 + tw] += lm.model(patch, cond).float().cpu()[0] * win
            weight[:, y:y + th, x0:x0 + tw] += win
    out /= weight   # in place: at 4096² every full-size copy is 200 MB
    return out[:, :h, :w]


@dataclass
class DenoiseResult:
    noisy: np.ndarray           # (C, H, W) the input as shown (the noisy image)
    noise: np.ndarray           # predicted noise in image units
    reconstruction: np.ndarray  # clipped to [0, 1]
    sigma255: float             # the noise level used (given or estimated)
    estimated: bool


def predict_ensemble(lm: LoadedModel, x: torch.Tensor, cond: torch.Tensor | None,
                     tile: int | None = -1) -> torch.Tensor:
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
    _, h, w = noisy.shape
    check_denoise_memory(lm, h, w, tile, ensemble)
    if estimated:
        sigma255 = estimate_sigma255(noisy)
    assert sigma255 is not None
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
    captured: dict = {}
    layers = model.model.blocks
    assert isinstance(layers, torch.nn.ModuleList)
    handle = layers[block].register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
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
