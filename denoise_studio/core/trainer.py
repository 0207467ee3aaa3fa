"""The training loop. It emits events to sinks and never prints or touches Qt.

    trainer = Trainer(spec, TrainConfig(steps=200), sinks=[print], run=RunFolder.create(...))
    result = trainer.run()       # a FinishedEvent or a FailedEvent

Runs unchanged under `torchrun`: every rank draws the same global batch from (seed, step)
and trains on its slice, so N processes compute what one process with the same global
batch computes; rank 0 alone writes the run folder.
"""
from __future__ import annotations

import copy
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from denoise_studio.core.analysis import downsampling_factor
from denoise_studio.core.checkpoint import load_checkpoint, load_weights, save_checkpoint
from denoise_studio.core.data import (
    VAL_SIGMA,
    ImageSet,
    check_observations,
    sample_crops,
    step_generator,
    validation_crops,
)
from denoise_studio.core.devices import resolve_device
from denoise_studio.core.errors import DataError, DenoiseError
from denoise_studio.core.events import (
    CheckpointEvent,
    EvalEvent,
    Event,
    FailedEvent,
    FinishedEvent,
    PreviewEvent,
    RecoveredEvent,
    StartedEvent,
    StepEvent,
)
from denoise_studio.core.metrics import psnr_batch
from denoise_studio.core.network import build_network
from denoise_studio.core.noise import make_noise
from denoise_studio.core.objectives import make_objective
from denoise_studio.core.plan import TrainConfig  # noqa: F401  (re-exported: the settings live in plan)
from denoise_studio.core.precision import describe, resolve_amp
from denoise_studio.core.runfolder import RunFolder, preview_path
from denoise_studio.core.spec import ArchitectureSpec
from denoise_studio.core.spikes import LR_BACKOFF, SpikeGuard

CHECKPOINT_FORMAT = "denoise-studio/checkpoint"
PEER_WAIT_S = 60   # how long a finished torchrun rank waits for the others before tearing the group down


class Control:
    """Stop and pause flags, checked between steps (threading or multiprocessing Events).

    Whoever stops a run says why (`request_stop`): the trainer finishes the step in progress,
    writes the last checkpoint and a `finished` event with that reason. A bare `stop.set()`
    (the app's Stop button, across processes) reads as "stopped"."""

    def __init__(self, stop=None, pause=None):
        self.stop = stop if stop is not None else threading.Event()
        self.pause = pause if pause is not None else threading.Event()
        self.reason: str | None = None
        self.requested = False

    def request_stop(self, reason: str = "stopped", from_signal: bool = False) -> None:
        """from_signal: called in a signal handler, which may have interrupted this very thread inside
        an Event's lock (a multiprocessing Event's is_set takes one): then only plain attributes are
        set, and the trainer reads them between steps."""
        if self.reason is None:   # the first reason wins: a SIGTERM after Ctrl+C is still an interrupt
            self.reason = reason
        self.requested = True
        if not from_signal:
            self.stop.set()

    @property
    def stopping(self) -> bool:
        return self.requested or self.stop.is_set()


def lr_at(config: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup))
    return config.lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _distributed() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class Trainer:
    def __init__(self, spec: ArchitectureSpec, config: TrainConfig, sinks=(), run: RunFolder | None = None,
                 control: Control | None = None, resume: bool = False, images: ImageSet | None = None,
                 batches: Callable[[Trainer, int], tuple] | None = None):
        """batches: what step `step` trains on, called as batches(trainer, step) -> (pairs, levels);
        by default Trainer.batch. A seam for tests that inject faults (a NaN, an OOM) into the loop."""
        self.spec, self.config = spec, config
        self.batches = batches if batches is not None else Trainer.batch
        self.rank, self.world = _distributed()
        self.run_folder = run if self.rank == 0 else None
        self.sinks = list(sinks) + ([run] if self.run_folder is not None else []) if self.rank == 0 else []
        self.control = control or Control()
        self.resume = resume
        self.images: Any = images   # an ImageSet once _setup has run
        self.resumed_from: int | None = None
        self.step = 0
        self.best_psnr = -math.inf
        self.eval_history: list[list] = []
        self.last_checkpoint: str | None = None
        self.notes: list[str] = []   # one line each about the data (mixed noise levels, one image)
        self.levels: torch.Tensor | None = None           # self-supervised: each training image's noise level
        self.val_clean: torch.Tensor | None = None        # None: real noisy data, no clean reference
        self.preview_clean: torch.Tensor | None = None

    # --- events ---
    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink(event)

    def _now(self, step=None) -> dict:
        return {"step": self.step if step is None else step, "time": time.time()}

    # --- setup ---
    def _setup(self) -> None:
        cfg = self.config
        problems = cfg.problems(self.spec)
        if problems:
            raise DenoiseError("invalid training settings: " + " ".join(problems))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.world > 1:
            self._init_distributed()
        else:
            self.device = resolve_device(cfg.device)
        dev = self.device
        self.noise = make_noise(cfg.noise_dict())
        torch.manual_seed(cfg.seed)
        self.model = build_network(self.spec).to(dev)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else dev.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        amp, self.amp_dtype = resolve_amp(dev.type, cfg.amp)   # auto: the hardware's fast path (precision.py)
        self.precision = describe(dev.type, amp)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp_dtype == torch.float16)
        # The moving average of the weights: what evaluation, previews and checkpoints use (free at inference).
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False) if cfg.ema else None
        opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.guard = SpikeGuard()   # undoes a step that throws training off (core/spikes.py)
        self.forward: Any = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.forward = DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        if self.images is None:
            self.images = ImageSet.load(cfg.data, self.spec.in_channels)
        if not self.images.train:
            raise DataError(f"{cfg.data}: no training images.")
        self.objective = make_objective(cfg.objective)
        self._setup_data()
        if self.resume:
            self._load_resume()

    def _setup_data(self) -> None:
        """What the objective trains on (`train_source`: clean images for supervised, noisy observations
        otherwise, with one level per image) and the fixed validation and preview crops: the network
        input, its level, and the clean reference where one exists (None: real noisy data)."""
        cfg, dev, imgs = self.config, self.device, self.images
        preview_size = max(cfg.crop, min(192, min(min(t.shape[1:]) for t in imgs.val)))
        preview_size -= preview_size % (downsampling_factor(self.spec) * self.objective.crop_multiple)
        g = torch.Generator().manual_seed(12345)   # fixed validation noise
        if not self.objective.self_supervised:
            self.train_source, self.levels = imgs.train, None
            clean = validation_crops(imgs.val, cfg.crop).to(dev)
            pclean = validation_crops(imgs.val, preview_size, count=1).to(dev)
            level = self.noise.level_for_sigma(VAL_SIGMA)
            val_eps = torch.randn(clean.shape, generator=g).to(dev)
            preview_eps = torch.randn(pclean.shape, generator=g).to(dev)
            self.val_level = torch.full((len(clean),), level, device=dev)
            self.val_x = self.noise.corrupt(clean, self.val_level, val_eps)[0]
            self.preview_x = self.noise.corrupt(pclean, self.val_level[:1], preview_eps)[0]
            self.val_source, self.val_clean, self.preview_clean = clean, clean, pclean
            return
        if cfg.adds_noise():   # corrupted once, seeded per image: the network never sees a clean image
            train, train_levels = self._corrupt_once(imgs.train, 0)
            val, val_levels = self._corrupt_once(imgs.val, len(imgs.train))
            self.val_clean = validation_crops(imgs.val, cfg.crop).to(dev)
            self.preview_clean = validation_crops(imgs.val, preview_size, count=1).to(dev)
        else:
            train_sigmas, val_sigmas = imgs.sigmas("train"), imgs.sigmas("val")
            self.notes = check_observations(cfg.data, train_sigmas, cfg.objective, len(imgs.train))
            train, val = imgs.train, imgs.val
            train_levels = [self.noise.level_for_sigma(s) for s in train_sigmas]
            val_levels = [self.noise.level_for_sigma(s) for s in val_sigmas]
            self.val_clean = self.preview_clean = None
        self.train_source, self.levels = train, torch.tensor(train_levels, dtype=torch.float32)
        self.val_source = validation_crops(val, cfg.crop).to(dev)
        per_image = len(self.val_source) // len(val) if len(self.val_source) >= len(val) else 1
        self.val_level = torch.tensor([val_levels[min(i // per_image, len(val) - 1)]
                                       for i in range(len(self.val_source))], device=dev)
        self.val_x = self.noise.prepare(self.val_source, self.val_level)
        self.preview_x = self.noise.prepare(validation_crops(val, preview_size, count=1).to(dev), self.val_level[:1])

    def _corrupt_once(self, images: list[torch.Tensor], first: int) -> tuple[list[torch.Tensor], list[float]]:
        """Each image with its own noise, seeded by (seed, its number): the noisy observations."""
        out, levels = [], []
        for i, img in enumerate(images):
            g = step_generator(self.config.seed, first + i, rank=1)
            level = self.noise.sample_levels(1, g)
            clean = img.float()[None] / 255.0 if img.dtype == torch.uint8 else img[None]
            x, _ = self.noise.corrupt(clean, level, torch.randn(clean.shape, generator=g))
            out.append(self.noise.display_noisy(x, level)[0])
            levels.append(float(level[0]))
        return out, levels

    def _init_distributed(self) -> None:
        import torch.distributed as dist
        local = int(os.environ.get("LOCAL_RANK", 0))
        want = resolve_device(self.config.device)
        if want.type == "cuda":
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.config.batch_size % self.world:
            raise DenoiseError(f"batch size {self.config.batch_size} is not divisible by the {self.world} "
                               "processes; use a multiple of the process count.")

    def _load_resume(self) -> None:
        path = self.run_folder.resume_checkpoint() if self.run_folder else None
        if self.world > 1:   # every rank reads rank 0's checkpoint path
            import torch.distributed as dist
            box = [str(path) if path else None]
            dist.broadcast_object_list(box, src=0)
            path = Path(box[0]) if box[0] else None
        if path is None:   # resume=True without a run folder to resume from: nothing to load
            return
        ckpt = load_checkpoint(path)
        load_weights(self.model, ckpt, raw=True)
        if self.ema_model is not None:
            load_weights(self.ema_model, ckpt)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.step = ckpt.step
        self.best_psnr = ckpt.meta.get("best_psnr") or -math.inf
        self.guard.lr_scale = ckpt.meta.get("lr_scale", 1.0)   # a resume keeps a spike's back-off
        self.eval_history = ckpt.meta.get("history", {}).get("eval", [])
        self.last_checkpoint = str(path)
        self.resumed_from = ckpt.step

    # --- the pieces of a step ---
    @property
    def eval_model(self) -> torch.nn.Module:
        """The network evaluation, previews and checkpoints use: the average when there is one."""
        return self.ema_model if self.ema_model is not None else self.model

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema ← d·ema + (1 − d)·weights, with d ramping up from 0.1 (Polyak averaging over a run's
        second half until d reaches the configured decay); buffers are copied."""
        if self.ema_model is None:
            return
        d = min(self.config.ema, (1 + self.step) / (10 + self.step))
        ema: list[torch.Tensor] = list(self.ema_model.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in self.model.parameters()], 1 - d)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers(), strict=True):
            e.copy_(b)

    def _guarded(self) -> dict:
        """What a spike recovery restores: the weights, their average and the optimizer's state."""
        return {"model": self.model, "optimizer": self.optimizer,
                **({"ema": self.ema_model} if self.ema_model is not None else {})}

    def _recover(self, loss: float, lr: float) -> None:
        median = statistics.median(self.guard.losses)
        back = self.guard.recover(self._guarded())
        self.emit(RecoveredEvent(**self._now(), loss=loss, restored_step=back, lr_scale=self.guard.lr_scale,
                                 message=f"the loss jumped to {loss:.4g} at step {self.step + 1} (recent median "
                                         f"{median:.4g}); went back to step {back}'s weights and halved the "
                                         f"learning rate (now {lr * LR_BACKOFF:.2g})."))

    def _condition(self, level):
        c = self.noise.condition(level, self.spec.conditioning)
        return None if c is None else c.to(self.device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def batch(self, step: int):
        """(the objective's pairs, their levels) for this step: a pure function of (seed, step)."""
        cfg = self.config
        gen = step_generator(cfg.seed, step)
        images, index = sample_crops(self.train_source, cfg.batch_size, cfg.crop, gen)
        level = self.noise.sample_levels(cfg.batch_size, gen) if self.levels is None else self.levels[index]
        eps = torch.randn(images.shape, generator=gen)
        if self.world > 1:
            per = cfg.batch_size // self.world
            part = slice(self.rank * per, (self.rank + 1) * per)
            images, level, eps = images[part], level[part], eps[part]
        images, level, eps = images.to(self.device), level.to(self.device), eps.to(self.device)
        pairs = self.objective.pairs(images, self.noise, level, eps, gen)
        if self.channels_last:
            pairs.x = pairs.x.contiguous(memory_format=torch.channels_last)
        return pairs, level

    @torch.no_grad()
    def _reconstruct(self, level, model=None):
        """Noisy images → the network's estimate (the ne2ne regulariser's full-resolution pass)."""
        net = self.forward if model is None else model

        def run(y):
            with self._autocast():
                return self.noise.reconstruct(y, net(y, self._condition(level)).float(), level)
        return run

    def _grad_norms(self) -> list[float]:
        out = []
        for block in self.model.blocks:
            sq = [p.grad.detach().float().pow(2).sum() for p in block.parameters() if p.grad is not None]
            out.append(float(torch.stack(sq).sum().sqrt()) if sq else 0.0)
        return out

    @torch.no_grad()
    def _predict(self, x, level):
        with self._autocast():
            pred = self.eval_model(x, self._condition(level)).float()
        return pred, self.noise.reconstruct(x, pred, level)

    @torch.no_grad()
    def evaluate(self) -> EvalEvent:
        """The objective's own loss on fixed validation pairs, and PSNR against the clean crops. Without
        clean images (real noisy data) the PSNR reported is the loss's, −10·log10(loss), and the
        noisy input's is that of the loss of the input itself: both rank checkpoints as the loss does."""
        self.model.eval()
        psnrs, losses, noisy = [], [], []
        g = torch.Generator().manual_seed(12345)   # the same masks and sub-images at every evaluation
        for i in range(0, len(self.val_x), 16):
            x, level = self.val_x[i:i + 16], self.val_level[i:i + 16]
            pairs = self.objective.pairs(self.val_source[i:i + 16], self.noise, level, torch.randn(x.shape,
                                         generator=g).to(self.device), g)
            pred, _ = self._predict(pairs.x, level)
            losses.append(self.objective.loss(pairs, pred, self.noise, level,
                                              self._reconstruct(level, self.eval_model)))
            if self.val_clean is not None:
                _, rec = self._predict(x, level)
                psnrs.append(psnr_batch(rec, self.val_clean[i:i + 16]))
                noisy.append(psnr_batch(self.noise.display_noisy(x, level), self.val_clean[i:i + 16]))
            else:
                noisy.append(self.objective.loss(pairs, torch.zeros_like(pred), self.noise, level, lambda y: y))
        self.model.train()
        loss = float(torch.cat(losses).mean())
        if self.val_clean is None:
            as_is = float(torch.cat(noisy).mean())
            return EvalEvent(**self._now(), psnr=-10 * math.log10(max(loss, 1e-12)), loss=loss,
                             noisy_psnr=-10 * math.log10(max(as_is, 1e-12)))
        return EvalEvent(**self._now(), psnr=float(torch.cat(psnrs).mean()), loss=loss,
                         noisy_psnr=float(torch.cat(noisy).mean()))

    def preview(self) -> PreviewEvent:
        self.model.eval()
        level, x = self.val_level[:1], self.preview_x
        pred, rec = self._predict(x, level)
        self.model.train()
        hwc = lambda t: t[0].float().permute(1, 2, 0).cpu().numpy()  # noqa: E731
        noisy = self.noise.display_noisy(x, level)
        # Real noisy data has no clean reference: the pane shows the noisy image in its place.
        clean = self.preview_clean if self.preview_clean is not None else noisy
        predicted, true = self.noise.added_noise(pred, level), noisy - clean
        images = {"noisy": hwc(noisy), "noise": hwc(predicted), "reconstruction": hwc(rec.clamp(0, 1)),
                  "clean": hwc(clean), "true_noise": hwc(true)}
        stats = {"noise_std": 255 * float(predicted.float().std())}
        psnr = 0.0
        if self.preview_clean is not None:   # else no true noise, no PSNR: the pane shows only what is known
            psnr = float(psnr_batch(rec, clean)[0])
            stats.update(true_noise_std=255 * float(true.float().std()), psnr=psnr,
                         noisy_psnr=float(psnr_batch(noisy, clean)[0]))
        # Named before emitting, so every sink sees the same event whatever their order.
        path = preview_path(self.step) if self.run_folder is not None else None
        return PreviewEvent(**self._now(), psnr=psnr, path=path, images=images,
                            stats={k: v if math.isfinite(v) else None for k, v in stats.items()})

    def _save(self, which: str) -> None:
        if self.run_folder is None:
            return
        path = self.run_folder.checkpoints / f"{which}.safetensors"
        meta = {"format": CHECKPOINT_FORMAT, "version": 1, "spec": self.spec.to_dict(),
                "config": self.config.to_dict(), "noise": self.noise.to_dict(), "step": self.step,
                "best_psnr": None if math.isinf(self.best_psnr) else self.best_psnr,
                "lr_scale": self.guard.lr_scale,   # below 1 after a loss spike was undone (core/spikes.py)
                "history": {"eval": self.eval_history}, "world_size": self.world}
        save_checkpoint(path, self.eval_model, meta, self.optimizer,
                        train_model=self.model if self.ema_model is not None else None)
        if which == "last":
            self.last_checkpoint = str(path)
        self.emit(CheckpointEvent(**self._now(), path=str(path.relative_to(self.run_folder.path)),
                                  best=which == "best"))

    def _eval_and_keep_best(self) -> None:
        if self.rank != 0:
            return
        ev = self.evaluate()
        self.eval_history.append([self.step, ev.psnr])
        self.emit(ev)
        if ev.psnr > self.best_psnr:
            self.best_psnr = ev.psnr
            self._save("best")

    def _global_mean(self, value: torch.Tensor) -> float:
        """The loss over the whole global batch (every rank's slice), so logs match a single process."""
        if self.world > 1:
            import torch.distributed as dist
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return float(value)

    def _should_stop(self, deadline_hit: bool) -> bool:
        stop = self.control.stopping or deadline_hit
        if self.world > 1:   # all ranks stop together (a signal may reach only one), or they would hang
            import torch.distributed as dist
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def _stop_reason(self, deadline_hit: bool) -> str:
        if self.control.stopping:
            return self.control.reason or "stopped"
        return "time" if deadline_hit else "terminated"   # another rank was signalled

    # --- the loop ---
    def run(self) -> FinishedEvent | FailedEvent:
        self.resumed_from = None
        try:
            self._setup()
        except DenoiseError as e:   # SpecInvalidError included
            return self._fail(str(e))
        cfg = self.config
        if self.run_folder is not None:
            try:
                self.run_folder.record(precision=self.precision)
            except (OSError, DenoiseError) as e:
                why = getattr(e, "strerror", None) or e
                return self._fail(f"could not update {self.run_folder.config_path}: {why}")
        self.emit(StartedEvent(**self._now(), total_steps=cfg.steps, device=str(self.device),
                               params=sum(p.numel() for p in self.model.parameters()), world_size=self.world,
                               resumed_from=self.resumed_from, skipped=self.images.skipped or None,
                               time_limit=cfg.time_limit, precision=self.precision))
        start = time.perf_counter()
        last_t = start
        reason = "steps"
        try:
            while self.step < cfg.steps:
                elapsed = time.perf_counter() - start
                deadline = cfg.time_limit is not None and elapsed >= cfg.time_limit
                if self._should_stop(deadline):
                    reason = self._stop_reason(deadline)
                    break
                while self.control.pause.is_set() and not self.control.stopping:
                    time.sleep(0.05)
                    last_t = time.perf_counter()
                progress = self.step / cfg.steps
                if cfg.time_limit:
                    progress = max(progress, elapsed / cfg.time_limit)
                lr = lr_at(cfg, self.step, progress) * self.guard.lr_scale
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                pairs, level = self.batches(self, self.step)
                with self._autocast():
                    pred = self.forward(pairs.x, self._condition(level))
                loss = self.objective.loss(pairs, pred.float(), self.noise, level, self._reconstruct(level)).mean()
                value = self._global_mean(loss.detach())
                if not math.isfinite(value):
                    return self._fail(f"the loss became {value} at step {self.step + 1}; training stopped. "
                                      f"Lower the learning rate (now {cfg.lr:g}) or keep gradient clipping on.")
                if self.guard.is_spike(value):   # undo the step that threw training off; skip this batch
                    self._recover(value, lr)
                    self.step += 1
                    last_t = time.perf_counter()
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                norms = self._grad_norms() if (self.step + 1) % cfg.grad_norm_every == 0 else None
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self._update_ema()
                self.step += 1
                self.guard.observe(self.step, value, self._guarded())
                now = time.perf_counter()
                self.emit(StepEvent(**self._now(), loss=value, lr=lr,
                                    images_per_s=cfg.batch_size / max(now - last_t, 1e-9), grad_norms=norms))
                last_t = now
                extra = False   # eval, preview and checkpoint time is kept out of images/s
                if self.step % cfg.eval_every == 0:
                    self._eval_and_keep_best()
                    extra = True
                if self.step % cfg.preview_every == 0 and self.rank == 0:
                    self.emit(self.preview())
                    extra = True
                if self.step % cfg.checkpoint_every == 0:
                    self._save("last")
                    extra = True
                if extra:
                    last_t = time.perf_counter()
        except RuntimeError as e:   # torch.OutOfMemoryError is one
            if isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e) or "can't allocate memory" in str(e):
                return self._out_of_memory()
            return self._fail(f"training failed at step {self.step + 1}: {str(e).splitlines()[0][:300]}")
        except DenoiseError as e:
            return self._fail(str(e))
        except OSError as e:   # a full disk or a vanished folder while writing a checkpoint or preview
            return self._fail(f"could not write to the run folder at step {self.step}: {e.strerror or e}"
                              f"{f' ({e.filename})' if getattr(e, 'filename', None) else ''}; free some space "
                              "or choose another folder. The previous checkpoint is intact.")
        except Exception as e:   # a data or device fault: end the run cleanly, never take the caller down
            return self._fail(f"training failed at step {self.step + 1}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300] if str(e) else ''}")
        except KeyboardInterrupt:   # a second Ctrl+C: abort now, but still leave a terminal event
            self._fail(f"aborted at step {self.step} by a second interrupt; the last checkpoint is kept.")
            raise
        try:
            if reason in ("steps", "time"):   # a stop request wants the checkpoint, not more work first
                if self.step and (not self.eval_history or self.eval_history[-1][0] != self.step):
                    self._eval_and_keep_best()
                if self.step and self.rank == 0 and self.step % cfg.preview_every:
                    self.emit(self.preview())
            if self.step and self.step != getattr(self, "resumed_from", None):
                self._save("last")
        except OSError as e:
            return self._fail(f"could not write the final checkpoint: {e.strerror or e}; free some space. "
                              "The previous checkpoint is intact.")
        except KeyboardInterrupt:
            self._fail(f"aborted at step {self.step} by a second interrupt while saving; the previous "
                       "checkpoint is intact.")
            raise
        done = FinishedEvent(**self._now(), reason=reason)
        self.emit(done)
        self._close(finished=True)
        return done

    def _out_of_memory(self) -> FailedEvent:
        """Free what the failed step held, and fail naming the settings that decide the memory."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        cfg = self.config
        return self._fail(f"out of memory on {self.device} at step {self.step + 1} with batch size "
                          f"{cfg.batch_size} and crop {cfg.crop}; lower the batch size or the crop.")

    def _fail(self, message: str) -> FailedEvent:
        event = FailedEvent(**self._now(), message=message, checkpoint=self.last_checkpoint)
        self.emit(event)
        self._close()
        return event

    def _close(self, finished: bool = False) -> None:
        if self.run_folder is not None:
            self.run_folder.close()
        if self.world > 1:
            # Tear gloo/NCCL down before exit: a rank leaving with a live process group while another
            # still saves aborted at exit ("terminate called without an active exception"). A finished
            # rank first waits (bounded) until every rank has finished too: rank 0 evaluates and writes
            # the last checkpoint after the others are done, and destroying the group under it aborted
            # rank 1 now and then. A rank that failed does not wait: its peers time out and go on.
            import datetime

            import torch.distributed as dist
            if dist.is_initialized():
                try:
                    if finished:
                        if dist.get_backend() == "gloo":
                            dist.monitored_barrier(timeout=datetime.timedelta(seconds=PEER_WAIT_S))
                        else:
                            dist.barrier()
                except Exception:   # noqa: BLE001  (a peer failed or is gone: exit anyway)
                    pass
                try:
                    dist.destroy_process_group()
                except Exception:   # noqa: BLE001  (exiting anyway; the run folder is complete)
                    pass
