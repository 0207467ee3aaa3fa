"""Training in a child process (multiprocessing spawn), so that a crash, an out-of-memory
or a CUDA fault cannot take the window down, and the GUI keeps a core to itself.

The parent passes plain data (spec and config dicts, a run folder path) and three Events
(stop, pause, detach); the child streams every event back through a queue and writes the run
folder itself, holding its writer lock.

Lifecycle: the child ignores SIGINT (Ctrl+C in the terminal reaches the whole process group;
the app decides what happens to the run). SIGTERM, or the app dying, ends the run like Stop:
the current step finishes, the last checkpoint and a `finished` event are written. When the
app leaves with "keep training in the background" it sets `detach` first: the child then
trains on headless, still writing its run folder, and stops sending events nobody reads.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import traceback

PARENT_POLL_S = 0.5


def _watch_parent(control, detach) -> None:
    """Stop the run (reason "terminated") if the app dies without detaching the child."""
    parent = mp.parent_process()
    if parent is None:
        return

    def loop():
        while not control.stopping:
            if not parent.is_alive():
                if not detach.is_set():
                    control.request_stop("terminated")
                return
            control.stop.wait(PARENT_POLL_S)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def train_in_child(spec: dict, config: dict, run_dir: str, events, stop, pause, resume: bool = False,
                   detach=None) -> None:
    """Entry point of the child process."""
    import torch

    from denoise_studio.core.events import FailedEvent
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.spec import spec_from_dict
    from denoise_studio.core.trainer import Control, TrainConfig, Trainer

    detach = detach if detach is not None else threading.Event()
    control = Control(stop, pause)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: control.request_stop("terminated", from_signal=True))
    _watch_parent(control, detach)

    def send(ev) -> None:
        if not detach.is_set():   # headless: nobody drains the queue, so stop filling it
            events.put(ev)

    run = None
    try:
        cfg = TrainConfig.from_dict(config)
        if cfg.threads is None:
            cfg.threads = max(1, (os.cpu_count() or 2) - 1)   # leave the GUI a core
        torch.set_num_threads(cfg.threads)
        spec_obj = spec_from_dict(spec)
        run = RunFolder.create(run_dir, spec_obj, cfg.to_dict(), new=not resume)
        Trainer(spec_obj, cfg, sinks=[send], run=run, control=control, resume=resume).run()
    except BaseException as e:   # anything at all: the parent must hear why, in one line
        import time

        from denoise_studio.core.errors import DenoiseError
        message = str(e).splitlines()[0] if str(e) else ""
        if not isinstance(e, DenoiseError):
            message = f"training process error: {type(e).__name__}: {message}".strip()
            traceback.print_exc()
        send(FailedEvent(step=0, time=time.time(), message=message))
    finally:
        if run is not None:
            run.close()
        if detach.is_set():
            events.cancel_join_thread()   # nobody will read what is left: exit without waiting on it


def warm_up() -> None:
    """Pay for what a first training step needs: torch, the trainer and torch._dynamo, which torch
    imports the first time any optimizer is made (≈ 2.4 s of a 5-s cold start on 2 cores)."""
    import skimage.data  # noqa: F401  (the built-in training images)
    import torch

    import denoise_studio.core.trainer  # noqa: F401
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def warm_child(jobs, ready, events, stop, pause, detach=None) -> None:
    """A training child started before it is needed: it warms up while the user is still editing,
    sets `ready`, then runs the one job it is sent ((spec, config, run_dir, resume); None: exit).
    Waiting, it exits quietly if the app that started it is gone."""
    import queue

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the app handles Ctrl+C; never a traceback here
    warm_up()
    ready.set()
    parent = mp.parent_process()
    while True:
        try:
            job = jobs.get(timeout=1.0)
            break
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
    if job is not None:
        spec, config, run_dir, resume = job
        train_in_child(spec, config, run_dir, events, stop, pause, resume, detach)


def spawn_context():
    """`spawn`, never `fork`: CUDA cannot re-initialise in a forked child."""
    return mp.get_context("spawn")


def start_ignoring_sigint(process) -> None:
    """Start `process` with SIGINT ignored from its first instruction: a spawned Python keeps an
    inherited SIG_IGN, so Ctrl+C during its imports cannot print a KeyboardInterrupt traceback."""
    in_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        process.start()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old)
