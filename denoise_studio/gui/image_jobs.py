"""Work the image pane does off the GUI thread: denoise one image (network, then each
classical baseline as it finishes), the PSNR-vs-σ sweep, feature maps, and batches.

Results travel by Qt signals to slots of objects living in the GUI thread; every array sent
is freshly made, never shared with the worker.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Signal

from denoise_studio.core.baselines import BASELINES, run_baseline
from denoise_studio.core.data import find_images
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.images import from_channels, load_image, output_stem, save_image, to_channels
from denoise_studio.core.inference import (NOISE_SEED, LoadedModel, add_noise, denoise, estimate_sigma255,
                                           feature_maps, psnr_sweep)
from denoise_studio.core.metrics import psnr, ssim



@dataclass
class ImageRequest:
    generation: int
    pixels: np.ndarray               # (H, W) or (H, W, 3) float in [0, 1]
    grey: bool
    mode: str                         # "add" (clean input, synthetic noise) or "noisy" (real photo)
    sigma255: float | None            # the σ to add (mode add); None: estimate (mode noisy)
    model: LoadedModel | None
    baselines: bool = True
    sweep: bool = False
    ensemble: bool = False          # ×8 self-ensemble (core.inference.predict_ensemble)


@dataclass
class ImageResult:
    generation: int
    images: dict = field(default_factory=dict)     # (H, W[, 3]) arrays by pane name
    metrics: dict = field(default_factory=dict)    # pane name → "29.81 dB · SSIM 0.871"
    scores: dict = field(default_factory=dict)     # pane name → (psnr, ssim)
    sigma255: float = 0.0
    estimated: bool = False
    final: bool = False


def _hwc(chw: np.ndarray, grey: bool) -> np.ndarray:
    return from_channels(chw, grey)


def score_text(est: np.ndarray, clean: np.ndarray) -> tuple[str, tuple[float, float]]:
    p, s = psnr(est, clean), ssim(est, clean)
    return f"{p:.2f} dB · SSIM {s:.3f}", (p, s)


class JobSignals(QObject):
    result = Signal(object)       # ImageResult (partial, then final)
    failed = Signal(int, str)     # generation, message
    sweep = Signal(int, object)   # generation, (sigmas, psnrs)
    progress = Signal(int, int, str)   # done, total, message
    batch_done = Signal(object)   # summary dict
    features = Signal(int, object)   # generation, grid array (or an error message)


class DenoiseJob(QRunnable):
    def __init__(self, req: ImageRequest, signals: JobSignals):
        super().__init__()
        self.req, self.signals = req, signals

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:   # a worker must never die silently
            self.signals.failed.emit(self.req.generation, f"{type(e).__name__}: {e}")

    def _run(self) -> None:
        req = self.req
        channels = req.model.spec.in_channels if req.model else (1 if req.grey else 3)
        chw = to_channels(req.pixels, channels)
        res = ImageResult(req.generation)
        clean = None
        if req.mode == "add":
            clean = chw
            sigma = float(req.sigma255 or 0.0)
            noisy = add_noise(clean, sigma, NOISE_SEED)
            res.images["clean"] = _hwc(clean, req.grey)
            res.images["true_noise"] = _hwc(noisy - clean, req.grey)
        else:
            noisy = chw
            sigma = estimate_sigma255(noisy) if req.sigma255 is None else float(req.sigma255)
            res.estimated = req.sigma255 is None
        res.sigma255 = sigma
        res.images["noisy"] = _hwc(np.clip(noisy, 0, 1), req.grey)
        if clean is not None:
            res.metrics["noisy"], res.scores["noisy"] = score_text(res.images["noisy"], res.images["clean"])
        if req.model is not None:
            out = denoise(req.model, noisy, sigma, ensemble=req.ensemble)
            res.images["noise"] = _hwc(out.noise, req.grey)
            res.images["reconstruction"] = _hwc(out.reconstruction, req.grey)
            if clean is not None:
                res.metrics["reconstruction"], res.scores["reconstruction"] = score_text(
                    res.images["reconstruction"], res.images["clean"])
        self.signals.result.emit(res)
        if req.baselines:
            for name in BASELINES:
                part = ImageResult(req.generation, sigma255=sigma, estimated=res.estimated)
                part.images[name] = _hwc(run_baseline(name, noisy, sigma), req.grey)
                if clean is not None:
                    part.metrics[name], part.scores[name] = score_text(part.images[name], res.images["clean"])
                self.signals.result.emit(part)
        if req.sweep and req.model is not None and clean is not None:
            self.signals.sweep.emit(req.generation, psnr_sweep(req.model, clean))
        self.signals.result.emit(ImageResult(req.generation, final=True, sigma255=sigma))


class FeatureJob(QRunnable):
    def __init__(self, generation: int, model: LoadedModel, pixels: np.ndarray, block: int, sigma255: float,
                 signals: JobSignals):
        super().__init__()
        self.args = (model, pixels, block, sigma255)
        self.generation, self.signals = generation, signals

    def run(self) -> None:
        try:
            self.signals.features.emit(self.generation, feature_maps(*self.args))
        except Exception as e:   # a block index from an edited network, say
            self.signals.features.emit(self.generation, f"{type(e).__name__}: {e}")


class BatchJob(QRunnable):
    """Denoise many files into a folder; a bad file is reported by name and the rest still run."""

    def __init__(self, paths: list[str], out_dir: Path, model: LoadedModel, mode: str, sigma255: float,
                 signals: JobSignals, ensemble: bool = False):
        super().__init__()
        self.paths, self.out_dir, self.model = paths, Path(out_dir), model
        self.mode, self.sigma255, self.signals, self.ensemble = mode, sigma255, signals, ensemble
        self.cancel = threading.Event()

    @staticmethod
    def expand(paths) -> list[str]:
        out = []
        for p in paths:
            if Path(p).is_dir():
                out += [str(x) for x in find_images(p)]
            else:
                out.append(str(p))
        return out

    def run(self) -> None:
        files = self.expand(self.paths)
        written, errors = [], []
        for k, path in enumerate(files):
            if self.cancel.is_set():
                break
            self.signals.progress.emit(k, len(files), Path(path).name)
            try:
                im = load_image(path)
                chw = to_channels(im.pixels, self.model.spec.in_channels)
                noisy = add_noise(chw, self.sigma255, NOISE_SEED) if self.mode == "add" else chw
                out = denoise(self.model, noisy, self.sigma255 if self.mode == "add" else None,
                              ensemble=self.ensemble)
                target = self.out_dir / f"{output_stem(path)}_denoised.png"
                save_image(target, from_channels(out.reconstruction, im.grey), im.bit_depth, im.alpha)
                written.append(str(target))
            except DenoiseError as e:
                errors.append(str(e))
            except OSError as e:
                errors.append(f"{path}: cannot write its result ({e.strerror or e}).")
            except Exception as e:
                errors.append(f"{path}: {type(e).__name__}: {e}")
        self.signals.progress.emit(len(files), len(files), "")
        self.signals.batch_done.emit({"written": written, "errors": errors, "cancelled": self.cancel.is_set(),
                                      "total": len(files)})
