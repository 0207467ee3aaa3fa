"""Sub-commands that write and follow run folders: train, watch."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from denoise_studio.args import NoiseChoices, positive_int, sigma_range, unit_interval
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.events import (
    FINISH_REASONS,
    CheckpointEvent,
    EvalEvent,
    FailedEvent,
    FinishedEvent,
    RecoveredEvent,
    StartedEvent,
    StepEvent,
    dispatch,
)
from denoise_studio.core.plan import DEFAULT_STEPS

EXIT_FAILED = 1          # training ran and failed (e.g. the loss became NaN); the run folder says why
EXIT_WRITER_GONE = 3     # watch: the writer died without a terminal event
EXIT_SIGNAL = {"interrupted": 130, "terminated": 143}   # the shell's convention for SIGINT / SIGTERM


def seconds(text: str) -> float:
    """A polling interval: a finite number of seconds from 0.05 to an hour."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.05 <= v <= 3600:   # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} must be from 0.05 to 3600 seconds")
    return v


class ObjectiveChoices:
    """The registered objectives as argparse choices, looked up only when a value is checked or --help
    is shown (building the parser must not import torch)."""

    def _names(self) -> tuple:
        from denoise_studio.core.objectives import OBJECTIVES
        return tuple(OBJECTIVES)

    def __contains__(self, value) -> bool:
        return value in self._names()

    def __iter__(self):
        return iter(self._names())


def _number(low: float, zero_ok: bool):
    """A finite number above `low` (or equal to it when zero_ok) and at most 255, the 0–255 scale."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
        if not ((v >= low if zero_ok else v > low) and v <= 255):   # also refuses nan and inf
            bounds = f"from {low:g} to 255" if zero_ok else f"above {low:g} and at most 255"
            raise argparse.ArgumentTypeError(f"{text[:40]} is out of range: give a number {bounds}")
        return v
    return parse


def add_noise_options(s) -> None:
    """The parameters of the noise models beside gaussian (train and eval)."""
    s.add_argument("--gain", type=_number(0, False), metavar="A",
                   help="poisson-gaussian: x = A·Poisson(x₀/A) + N(0, B²) on the 0–255 scale (default 4)")
    s.add_argument("--read", type=_number(0, True), metavar="B",
                   help="poisson-gaussian: read noise std B on 0–255 (default 10)")
    s.add_argument("--blur", type=_number(0, False), metavar="PX",
                   help="correlated: std in pixels of the Gaussian kernel that correlates the noise (default 1)")


def add_commands(sub) -> None:
    s = sub.add_parser("train", help="train a network (runs unchanged under torchrun)",
                       epilog="Ctrl+C or SIGTERM finishes the current step, saves the last checkpoint and "
                              "exits (130 or 143); a second one aborts at once. Resume with --resume.")
    s.add_argument("spec", metavar="SPEC_OR_PRESET", nargs="?",
                   help="spec file or preset (omit with --resume to reuse the run's)")
    s.add_argument("--data", default=None, help="folder of images, builtin (default: scikit-image photos) or shapes "
                   "(generated coloured shapes for sampling; brings its recipe: DDPM, cosine, 32² crops, batch 32)")
    s.add_argument("--out", help="run folder to create (default: a new timestamped folder under "
                                 "$DENOISE_STUDIO_RUNS or ~/DenoiseStudio/runs), or to continue with --resume")
    s.add_argument("--steps", type=positive_int,
                   help=f"the run's total number of steps (default {DEFAULT_STEPS}); with --resume, the total "
                        "to reach, not steps to add")
    s.add_argument("--batch-size", type=positive_int, help="global batch size (default 8)")
    s.add_argument("--crop", type=positive_int,
                   help="training crop size (default 64; rounded down to what the network's downsampling needs)")
    s.add_argument("--lr", type=float, help="peak learning rate (default 2e-3)")
    s.add_argument("--warmup", type=int, help="linear warm-up steps before the cosine decay (default 50)")
    s.add_argument("--ema", type=unit_interval, metavar="DECAY",
                   help="decay of the weights' moving average that checkpoints hold (default 0.999; 0: off)")
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    s.add_argument("--seed", type=int)
    s.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop cleanly after this wall-clock budget; the LR schedule follows it")
    s.add_argument("--objective", choices=ObjectiveChoices(),
                   help="supervised (default: clean images, noise added), n2v (Noise2Void blind-spot masking) or "
                        "ne2ne (Neighbor2Neighbor sub-sampled pairs): n2v and ne2ne learn from a folder of noisy "
                        "images alone, with no clean image")
    s.add_argument("--noise", choices=NoiseChoices(),
                   help="noise process to train on (default gaussian); with n2v/ne2ne it corrupts each image once "
                        "(seeded), for experiments on clean images")
    s.add_argument("--sigma", type=sigma_range, metavar="LO-HI",
                   help="gaussian/correlated σ range on 0–255 (default 5-50)")
    add_noise_options(s)
    s.add_argument("--schedule", choices=("linear", "cosine"), help="ddpm schedule")
    s.add_argument("--timesteps", type=positive_int, help="ddpm T (default 1000)")
    s.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), help="mixed precision (auto: bf16 on CUDA)")
    s.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory format")
    s.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    s.add_argument("--eval-every", type=positive_int, help="steps between evaluations and previews "
                                                           "(default: about 20 per run)")
    s.add_argument("--checkpoint-every", type=positive_int, help="steps between checkpoints (default: about 10 "
                                                                 "per run)")
    s.add_argument("--threads", type=positive_int, help="torch CPU threads")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint up to --steps in total")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("watch", help="follow a run folder that another process is writing",
                       epilog="Exit status: 0 the run finished, 1 it failed, 3 its writer is gone without "
                              "finishing (killed), 2 not a readable run folder.")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--interval", type=seconds, default=1.0, help="seconds between reads (default 1)")
    s.add_argument("--once", action="store_true", help="print what is there now and exit")
    s.set_defaults(func=cmd_watch)


# ---------------------------------------------------------------- train

def _scored_by(cfg) -> str:
    """What a run's validation PSNR measures (the printer's words): "σ=25" for supervised runs,
    the data's own noise for self-supervised ones, or, with no clean image, the objective's loss."""
    if cfg.objective == "supervised":
        return "at σ=25"
    return f"on the data's {cfg.noise} noise" if cfg.adds_noise() else "loss"


class ProgressPrinter:
    """A progress bar on a terminal, plain lines otherwise (a log file, CI)."""

    def __init__(self, stream=None, scored_by: str = "at σ=25"):
        self.stream = stream or sys.stdout
        self.scored_by = scored_by
        self.tty = self.stream.isatty()
        self.total = 0
        self.t0 = time.time()
        self.rate = 0.0
        self.first_step = 0
        self.time_limit = None
        self.last_checkpoint: int | None = None   # step of the last "last" checkpoint seen

    def eta(self, step: int, now: float | None = None) -> float:
        """Seconds left: whichever of the steps and the time limit runs out first."""
        elapsed = (now or time.time()) - self.t0
        eta = elapsed / max(step - self.first_step, 1) * max(self.total - step, 0)
        if self.time_limit:
            eta = min(eta, max(0.0, self.time_limit - elapsed))
        return eta

    def __call__(self, ev) -> None:
        dispatch({StartedEvent: self._started, StepEvent: self._step, EvalEvent: self._eval,
                  CheckpointEvent: self._checkpoint, FinishedEvent: self._finished, FailedEvent: self._failed,
                  RecoveredEvent: self._recovered}, ev)

    def _started(self, ev) -> None:
        self.total, self.first_step, self.time_limit = ev.total_steps, ev.step, ev.time_limit
        self.t0 = time.time()
        resumed = f", resumed from step {ev.resumed_from}" if ev.resumed_from else ""
        for message in ev.skipped or []:
            print(f"skipped: {message}", file=sys.stderr)
        limit = f" or {ev.time_limit:g} s" if ev.time_limit else ""
        path = f", {ev.precision}" if ev.precision else ""
        self._line(f"training {ev.params:,} parameters on {ev.device}{path} up to step {ev.total_steps}{limit}"
                   f"{f' on {ev.world_size} processes' if ev.world_size > 1 else ''}{resumed}")

    def _step(self, ev) -> None:
        self.rate = ev.images_per_s if not self.rate else 0.9 * self.rate + 0.1 * ev.images_per_s
        eta = self.eta(ev.step)
        text = (f"step {ev.step}/{self.total}  loss {ev.loss:.5f}  {self.rate:.1f} img/s  "
                f"ETA {int(eta // 60)}:{int(eta % 60):02d}")
        if self.tty:
            bar = int(30 * ev.step / max(self.total, 1))
            self.stream.write(f"\r[{'#' * bar}{'.' * (30 - bar)}] {text}  ")
            self.stream.flush()
        elif ev.step % 10 == 0 or ev.step == 1:
            self._line(text)

    def _eval(self, ev) -> None:
        if self.scored_by == "loss":   # no clean image: the objective's loss is all there is
            as_is = 10 ** (-ev.noisy_psnr / 10)
            self._line(f"step {ev.step}: validation loss {ev.loss:.5f} (no clean images; the input as it is: "
                       f"{as_is:.5f})")
        else:
            self._line(f"step {ev.step}: validation PSNR {ev.psnr:.2f} dB {self.scored_by} "
                       f"(noisy input {ev.noisy_psnr:.2f} dB)")

    def _checkpoint(self, ev) -> None:
        if not ev.best:
            self.last_checkpoint = ev.step

    def _finished(self, ev) -> None:
        self._line(f"finished at step {ev.step} ({FINISH_REASONS[ev.reason]})")

    def _recovered(self, ev) -> None:
        self._line(f"recovered: {ev.message}")

    def _failed(self, ev) -> None:
        self._line(f"failed: {ev.message}" + (f" Last good checkpoint: {ev.checkpoint}" if ev.checkpoint else ""))

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


ARG_FIELDS = ("data", "steps", "batch_size", "crop", "lr", "warmup", "ema", "device", "seed", "time_limit", "objective",
              "noise", "sigma", "gain", "read", "blur", "schedule", "timesteps", "amp", "channels_last", "compile",
              "eval_every", "checkpoint_every", "threads")
NOISE_ARGS = ("noise", "sigma", "gain", "read", "blur")   # any of them asks n2v/ne2ne for synthetic noise


def train_config_from_args(args, base: dict | None = None, source: str = "settings"):
    """The run's settings: `base` (a resumed run's config.json) or the plan's defaults and cadences,
    then what the command line gives. Every value is validated (one line naming the setting)."""
    from denoise_studio.core.plan import RESUME_REQUIRED, TrainConfig, cadences, recipe
    given = {f: getattr(args, f) for f in ARG_FIELDS if getattr(args, f, None) is not None}
    if base is not None:
        cfg = TrainConfig.from_dict(base, source=source, required=RESUME_REQUIRED)
        return TrainConfig.from_dict({**cfg.to_dict(), **given}, source="the command line")
    given = {**recipe(given.get("data", "builtin")), **given}   # the data's recipe, then what was typed
    given["synthetic_noise"] = any(f in given for f in NOISE_ARGS)
    steps = given.get("steps", DEFAULT_STEPS)
    planned = {**(cadences(steps) if isinstance(steps, int) else {}), **given}
    if "eval_every" in given:
        planned["preview_every"] = given["eval_every"]
    return TrainConfig.from_dict(planned, source="the command line")


def _install_stop_signals(control) -> dict:
    """SIGINT and SIGTERM finish the step, save and end the run; a second one aborts at once
    (every file is written atomically, so even then nothing is left half-written)."""
    def on_signal(signum, _frame):
        if control.stopping:
            raise KeyboardInterrupt
        control.request_stop("interrupted" if signum == signal.SIGINT else "terminated", from_signal=True)
        os.write(2, b"\nstopping after this step and saving a checkpoint (again to abort)\n")

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def cmd_train(args) -> int:
    from denoise_studio.core.analysis import analyze
    from denoise_studio.core.checkpoint import load_checkpoint
    from denoise_studio.core.data import ImageSet, check_observations
    from denoise_studio.core.devices import resolve_device
    from denoise_studio.core.objectives import make_objective
    from denoise_studio.core.plan import new_run_dir, round_crop
    from denoise_studio.core.presets import load_spec
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.trainer import Control, Trainer

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # Everything is checked before the folder is touched: a refused command leaves nothing behind.
    if args.resume:
        if not args.out:
            raise DenoiseError("--resume needs --out RUN, the run folder to continue.")
        out = Path(args.out)
        run = RunFolder.open(out)
        spec = run.spec()
        if args.spec:
            given = load_spec(args.spec)
            if given.blocks != spec.blocks:
                raise DenoiseError(f"{out} was trained with a different network than {args.spec}; "
                                   "omit the spec to resume, or train into a new --out folder.")
        cfg = train_config_from_args(args, run.config(), source=str(run.config_path))
        # A run another process is writing is refused below, naming that process; only a run at rest
        # has a last checkpoint to check here.
        done = load_checkpoint(run.resume_checkpoint()).step if run.writer() is None else 0
        if done >= cfg.steps:
            raise DenoiseError(f"{out} is already at step {done} and --steps is the run's total ({cfg.steps}); "
                               f"nothing to do. Pass a total above {done}, e.g. --steps {done + cfg.steps}.")
    else:
        if not args.spec:
            raise DenoiseError("give a spec file or preset to train (see `denoise-studio presets`).")
        spec = load_spec(args.spec)
        cfg = train_config_from_args(args)
        out = Path(args.out) if args.out else new_run_dir(spec.name)
    multiple = make_objective(cfg.objective).crop_multiple
    rounded = round_crop(cfg.crop, spec, multiple)
    if rounded != cfg.crop:
        if rank == 0:
            halves = f" (and of 2: {cfg.objective} halves it)" if multiple > 1 else ""
            print(f"crop {cfg.crop} rounded down to {rounded}, a multiple of the network's downsampling{halves}",
                  file=sys.stderr)
        cfg.crop = rounded
    resolve_device(cfg.device)   # an unavailable device is a usage error, before any folder is made
    a = analyze(spec, cfg.crop)
    if not a.valid:
        raise DenoiseError(f"{spec.name} is not a valid network: {a.errors[0]}")
    problems = cfg.problems(spec)
    if problems:
        raise DenoiseError(problems[0])
    images = ImageSet.load(cfg.data, spec.in_channels)   # an unreadable data folder: refused here
    if not cfg.adds_noise():   # the images are the noisy observations: a clean folder is refused here
        notes = check_observations(cfg.data, images.sigmas("train"), cfg.objective, len(images.train))
        for note in notes if rank == 0 else []:
            print(f"note: {note}", file=sys.stderr)
    run = None
    if rank == 0:
        run = RunFolder.create(out, spec, {**cfg.to_dict(), "world_size": world,
                                           "effective_batch_size": cfg.batch_size,
                                           "lr_scaling": "none: lr applies to the global batch"},
                               new=not args.resume)
        if not args.out:
            print(f"run folder: {out}", file=sys.stderr)
    control = Control()
    printer = ProgressPrinter(scored_by=_scored_by(cfg))
    old = _install_stop_signals(control)
    try:
        result = Trainer(spec, cfg, sinks=[printer] if rank == 0 else [], run=run, resume=args.resume,
                         control=control, images=images).run()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if run is not None:
            run.close()
    if result.name == "failed":
        return EXIT_FAILED
    if result.reason in EXIT_SIGNAL:
        if rank == 0:
            print(f"checkpoint saved at step {result.step}; continue with "
                  f"`denoise-studio train --resume --out {out}`", file=sys.stderr)
        return EXIT_SIGNAL[result.reason]
    return 0


# ---------------------------------------------------------------- watch

def cmd_watch(args) -> int:
    """Follow a run until it ends. The writer's lock tells a live writer from a dead one: checked
    before each read, a free lock with no terminal event in what follows means the writer died."""
    from denoise_studio.core.events import TERMINAL
    from denoise_studio.core.runfolder import RunFolder, gone_message
    run = RunFolder.open(args.run)
    printer = ProgressPrinter()
    offset, ended = 0, None
    try:
        while True:
            alive = run.writer() is not None
            events, offset = run.read_events(offset)
            for ev in events:
                printer(ev)
                if ev.name in TERMINAL:
                    ended = ev.name
                elif ev.name == "started":   # a resume after an earlier end
                    ended = None
            if run.damaged_lines:
                print(f"skipped {run.damaged_lines} damaged line(s) in {run.events_path}", file=sys.stderr)
                run.damaged_lines = 0
            if args.once:
                return 0
            if ended is not None:
                return 0 if ended == "finished" else EXIT_FAILED
            if not alive:
                print(f"denoise-studio: {args.run}: {gone_message(args.run, printer.last_checkpoint)}",
                      file=sys.stderr)
                return EXIT_WRITER_GONE
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
