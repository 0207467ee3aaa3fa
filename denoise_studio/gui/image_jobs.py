"""Work the image pane does off the GUI thread: denoise one image (the network first, then
each classical baseline as it finishes), the PSNR-vs-σ sweep, feature maps, and batches.

Results travel by Qt signals to slots of objects living in the GUI thread; every array sent
is freshly made, never shared with the worker.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, QRunnable, Signal

from denoise_studio.core.baselines import BASELINES, run_baseline
from denoise_studio.core.data import find_images
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.images import from_channels, load_image, output_stem, save_image, to_channels
from denoise_studio.core.inference import (
    NOISE_SEED,
    LoadedModel,
    add_noise,
    denoise,
    estimate_sigma255,
    feature_maps,
    psnr_sweep,
)
from denoise_studio.core.metrics import psnr, ssim
from denoise_studio.core.objectives import OBJECTIVES

# Fastest first, so the baselines stream in after the network and the slowest never holds
# the others back (seconds on a 512² colour image, 2 busy cores).
BASELINE_ORDER = ("gaussian", "wavelet", "nl-means", "median", "tv")   # 0.02, 0.07, 0.16, 0.27, 0.53
assert set(BASELINE_ORDER) == set(BASELINES)


def self_supervised_objective(lm: LoadedModel | None) -> str | None:
    """The objective a loaded network was trained with, when it is a self-supervised one (n2v,
    ne2ne: trained on the user's noisy images themselves, as its checkpoint's config says); None
    for a supervised network, one without a config, or none."""
    config = (lm.meta or {}).get("config") if lm is not None else None
    objective = config.get("objective") if isinstance(config, dict) else None
    if isinstance(objective, str) and objective in OBJECTIVES and OBJECTIVES[objective].self_supervised:
        return objective
    return None


class Cancelled(Exception):
    """Raised inside a job when its work is no longer wanted (a newer σ, or Cancel)."""


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
    # True while this request is still wanted; checked between stages (and between network
    # passes), so a stale job stops instead of delaying the next one.
    live: Callable[[], bool] = lambda: True
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class ImageResult:
    generation: int
    images: dict = field(default_factory=dict)     # (H, W[, 3]) arrays by pane name
    metrics: dict = field(default_factory=dict)    # pane name → "29.81 dB · SSIM 0.871"
    scores: dict = field(default_factory=dict)     # pane name → (psnr, ssim)
    sigma255: float = 0.0
    estimated: bool = False
    final: bool = False
    stage: str = "network"                         # network · ensemble · baseline
    noisy_chw: np.ndarray | None = None            # what the baselines run on (network stage only)
    clean_chw: np.ndarray | None = None


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
    ensemble_progress = Signal(int, int, int)   # generation, network passes done, passes in all
    cancelled = Signal(int)       # generation whose ×8 was cancelled by the user


class _Counted(torch.nn.Module):
    """The network with a hook before each pass: counts passes, and stops a stale job there
    (core's denoise has no cancel; a pass is a fraction of a second)."""

    def __init__(self, inner: torch.nn.Module, before_pass: Callable[[], None]):
        super().__init__()
        self.inner, self.before_pass = inner, before_pass

    def forward(self, x, cond=None):
        self.before_pass()
        return self.inner(x, cond)


class DenoiseJob(QRunnable):
    """The network's part: noisy input, then the plain network result at once, then (when
    asked) the ×8 self-ensemble with progress. The baselines are a BaselineJob the pane starts
    when this result arrives, so they never hold the network back."""

    def __init__(self, req: ImageRequest, signals: JobSignals):
        super().__init__()
        self.req, self.signals = req, signals

    def run(self) -> None:
        try:
            self._run()
        except Cancelled:
            if self.req.cancel.is_set() and self.req.live():
                self.signals.cancelled.emit(self.req.generation)
        except Exception as e:   # a worker must never die silently
            self.signals.failed.emit(self.req.generation, f"{type(e).__name__}: {e}")

    def _check(self, cancellable: bool = False) -> None:
        """Stop if a newer request replaced this one, or (×8 only) the user pressed Cancel."""
        if not self.req.live() or (cancellable and self.req.cancel.is_set()):
            raise Cancelled

    def _run(self) -> None:
        req = self.req
        self._check()
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
        res.sigma255, res.noisy_chw, res.clean_chw = sigma, noisy, clean
        res.images["noisy"] = _hwc(np.clip(noisy, 0, 1), req.grey)
        if clean is not None:
            res.metrics["noisy"], res.scores["noisy"] = score_text(res.images["noisy"], res.images["clean"])
        passes = [0]

        def before_pass():
            self._check()
            passes[0] += 1

        if req.model is not None:
            model = replace(req.model, model=_Counted(req.model.model, before_pass))
            self._network(res, denoise(model, noisy, sigma), req.grey)
        self.signals.result.emit(res)
        try:
            self._ensemble(res, noisy, passes, before_pass)
        finally:
            self.signals.result.emit(ImageResult(req.generation, final=True, sigma255=sigma, stage="network"))

    def _ensemble(self, res: ImageResult, noisy: np.ndarray, passes: list, before_pass) -> None:
        req = self.req
        if req.model is not None and req.ensemble:
            per_orientation, passes[0] = passes[0], 0
            total = 8 * per_orientation

            def counted():
                self._check(cancellable=True)
                before_pass()
                self.signals.ensemble_progress.emit(req.generation, passes[0] - 1, total)

            model = replace(req.model, model=_Counted(req.model.model, counted))
            out = denoise(model, noisy, res.sigma255, ensemble=True)
            self.signals.ensemble_progress.emit(req.generation, total, total)
            part = ImageResult(req.generation, sigma255=res.sigma255, estimated=res.estimated, stage="ensemble")
            self._network(part, out, req.grey, res.images.get("clean"))
            self.signals.result.emit(part)

    @staticmethod
    def _network(res: ImageResult, out, grey: bool, clean: np.ndarray | None = None) -> None:
        res.images["noise"] = _hwc(out.noise, grey)
        res.images["reconstruction"] = _hwc(out.reconstruction, grey)
        clean = res.images.get("clean") if clean is None else clean
        if clean is not None:
            res.metrics["reconstruction"], res.scores["reconstruction"] = score_text(
                res.images["reconstruction"], clean)


class BaselineJob(QRunnable):
    """The classical baselines on the noisy input the network saw, fastest first, each shown as
    it finishes; then the PSNR-vs-σ sweep; then a final result that clears the busy state."""

    def __init__(self, req: ImageRequest, noisy: np.ndarray, clean: np.ndarray | None, sigma255: float,
                 estimated: bool, signals: JobSignals, sweep: bool):
        super().__init__()
        self.req, self.noisy, self.clean, self.signals = req, noisy, clean, signals
        self.sigma255, self.estimated, self.sweep = sigma255, estimated, sweep

    def run(self) -> None:
        req = self.req
        try:
            clean_hwc = None if self.clean is None else _hwc(self.clean, req.grey)
            for name in BASELINE_ORDER if req.baselines else ():
                if not req.live():
                    return
                part = ImageResult(req.generation, sigma255=self.sigma255, estimated=self.estimated,
                                   stage="baseline")
                part.images[name] = _hwc(run_baseline(name, self.noisy, self.sigma255), req.grey)
                if clean_hwc is not None:
                    part.metrics[name], part.scores[name] = score_text(part.images[name], clean_hwc)
                self.signals.result.emit(part)
            if self.sweep and req.live() and req.model is not None and self.clean is not None:
                self.signals.sweep.emit(req.generation, psnr_sweep(req.model, self.clean))
        except Exception as e:   # a worker must never die silently
            self.signals.failed.emit(req.generation, f"{type(e).__name__}: {e}")
        self.signals.result.emit(ImageResult(req.generation, final=True, sigma255=self.sigma255, stage="baseline"))


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
