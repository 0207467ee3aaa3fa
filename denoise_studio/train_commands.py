"""Sub-commands that write and follow run folders: train, watch."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from denoise_studio.args import positive_int, sigma_range
from denoise_studio.core.errors import DenoiseError


def add_commands(sub) -> None:
    s = sub.add_parser("train", help="train a network (runs unchanged under torchrun)")
    s.add_argument("spec", metavar="SPEC_OR_PRESET", nargs="?",
                   help="spec file or preset (omit with --resume to reuse the run's)")
    s.add_argument("--data", default=None, help="folder of images, or builtin (default)")
    s.add_argument("--out", required=True, help="run folder to create (or continue with --resume)")
    s.add_argument("--steps", type=positive_int)
    s.add_argument("--batch-size", type=positive_int, help="global batch size (default 8)")
    s.add_argument("--crop", type=positive_int, help="training crop size (default 64)")
    s.add_argument("--lr", type=float, help="peak learning rate (default 2e-3)")
    s.add_argument("--warmup", type=int, help="linear warm-up steps before the cosine decay (default 50)")
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    s.add_argument("--seed", type=int)
    s.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop cleanly after this wall-clock budget; the LR schedule follows it")
    s.add_argument("--noise", choices=("gaussian", "ddpm"))
    s.add_argument("--sigma", type=sigma_range, metavar="LO-HI", help="gaussian σ range on 0–255 (default 5-50)")
    s.add_argument("--schedule", choices=("linear", "cosine"), help="ddpm schedule")
    s.add_argument("--timesteps", type=positive_int, help="ddpm T (default 1000)")
    s.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), help="mixed precision (auto: bf16 on CUDA)")
    s.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory format")
    s.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    s.add_argument("--eval-every", type=positive_int)
    s.add_argument("--checkpoint-every", type=positive_int)
    s.add_argument("--threads", type=positive_int, help="torch CPU threads")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("watch", help="follow a run folder that another process is writing")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--interval", type=float, default=1.0)
    s.add_argument("--once", action="store_true", help="print what is there now and exit")
    s.set_defaults(func=cmd_watch)




# ---------------------------------------------------------------- train

class ProgressPrinter:
    """A progress bar on a terminal, plain lines otherwise (a log file, CI)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total = 0
        self.t0 = time.time()
        self.rate = 0.0
        self.first_step = 0

    def __call__(self, ev) -> None:
        name = ev.name
        if name == "started":
            self.total, self.first_step = ev.total_steps, ev.step
            self.t0 = time.time()
            resumed = f", resumed from step {ev.resumed_from}" if ev.resumed_from else ""
            for message in ev.skipped or []:
                print(f"skipped: {message}", file=sys.stderr)
            self._line(f"training {ev.params:,} parameters on {ev.device} for {ev.total_steps} steps"
                       f"{f' on {ev.world_size} processes' if ev.world_size > 1 else ''}{resumed}")
        elif name == "step":
            self.rate = ev.images_per_s if not self.rate else 0.9 * self.rate + 0.1 * ev.images_per_s
            done = ev.step - self.first_step
            per_step = (time.time() - self.t0) / max(done, 1)
            eta = per_step * (self.total - ev.step)
            text = (f"step {ev.step}/{self.total}  loss {ev.loss:.5f}  {self.rate:.1f} img/s  "
                    f"ETA {int(eta // 60)}:{int(eta % 60):02d}")
            if self.tty:
                bar = int(30 * ev.step / max(self.total, 1))
                self.stream.write(f"\r[{'#' * bar}{'.' * (30 - bar)}] {text}  ")
                self.stream.flush()
            elif ev.step % 10 == 0 or ev.step == 1:
                self._line(text)
        elif name == "eval":
            self._line(f"step {ev.step}: validation PSNR {ev.psnr:.2f} dB at σ=25 (noisy input {ev.noisy_psnr:.2f} dB)")
        elif name == "finished":
            why = {"steps": "all steps done", "time": "time limit reached", "stopped": "stopped"}[ev.reason]
            self._line(f"finished at step {ev.step} ({why})")
        elif name == "failed":
            self._line(f"failed: {ev.message}" + (f" Last good checkpoint: {ev.checkpoint}" if ev.checkpoint else ""))

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def train_config_from_args(args, base: dict | None = None):
    from denoise_studio.core.trainer import TrainConfig
    cfg = TrainConfig.from_dict(base or {})
    mapping = {"data": "data", "steps": "steps", "batch_size": "batch_size", "crop": "crop", "lr": "lr",
               "warmup": "warmup", "device": "device", "seed": "seed", "time_limit": "time_limit", "noise": "noise",
               "sigma": "sigma", "schedule": "schedule", "timesteps": "timesteps", "amp": "amp",
               "channels_last": "channels_last", "compile": "compile", "eval_every": "eval_every",
               "checkpoint_every": "checkpoint_every", "threads": "threads"}
    for arg, field in mapping.items():
        v = getattr(args, arg, None)
        if v is not None:
            setattr(cfg, field, v)
    if args.eval_every and not base:
        cfg.preview_every = args.eval_every
    return cfg


def cmd_train(args) -> int:
    import os

    from denoise_studio.core.presets import load_spec
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.trainer import Trainer

    out = Path(args.out)
    rank = int(os.environ.get("RANK", 0))
    if args.resume:
        run = RunFolder.open(out)
        spec = run.spec()
        if args.spec:
            given = load_spec(args.spec)
            if given.blocks != spec.blocks:
                raise DenoiseError(f"{out} was trained with a different network than {args.spec}; "
                                   "omit the spec to resume, or train into a new --out folder.")
        cfg = train_config_from_args(args, run.config())
    else:
        if not args.spec:
            raise DenoiseError("give a spec file or preset to train (see `denoise-studio presets`).")
        if (out / "events.jsonl").exists() and rank == 0:
            raise DenoiseError(f"{out} already holds a run; pass --resume to continue it, or choose another --out.")
        spec = load_spec(args.spec)
        cfg = train_config_from_args(args)
        run = None
    from denoise_studio.core.analysis import analyze
    from denoise_studio.core.devices import resolve_device
    resolve_device(cfg.device)   # an unavailable device is a usage error, before any folder is made
    a = analyze(spec, cfg.crop)
    if not a.valid:
        first = a.errors[0]
        raise DenoiseError(f"{spec.name} is not a valid network: {first}")
    if rank == 0:
        run = RunFolder.create(out, spec, {**cfg.to_dict(), "world_size": int(os.environ.get("WORLD_SIZE", 1)),
                                           "effective_batch_size": cfg.batch_size,
                                           "lr_scaling": "none: lr applies to the global batch"})
    result = Trainer(spec, cfg, sinks=[ProgressPrinter()] if rank == 0 else [], run=run, resume=args.resume).run()
    if result.name == "failed":
        return 1
    return 0



# ---------------------------------------------------------------- watch

def cmd_watch(args) -> int:
    from denoise_studio.core.runfolder import RunFolder
    run = RunFolder.open(args.run)
    printer = ProgressPrinter()
    offset = 0
    try:
        while True:
            events, offset = run.read_events(offset)
            for ev in events:
                printer(ev)
                if ev.name in ("finished", "failed") and not args.once:
                    return 0
            if args.once:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
