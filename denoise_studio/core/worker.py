"""Training in a child process (multiprocessing spawn), so that a crash, an out-of-memory
or a CUDA fault cannot take the window down, and the GUI keeps a core to itself.

The parent passes plain data (spec and config dicts, a run folder path) and two Events;
the child streams every event back through a queue and writes the run folder itself.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import traceback


def train_in_child(spec: dict, config: dict, run_dir: str, events, stop, pause, resume: bool = False) -> None:
    """Entry point of the child process."""
    import torch

    from denoise_studio.core.events import FailedEvent
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.spec import spec_from_dict
    from denoise_studio.core.trainer import Control, TrainConfig, Trainer

    cfg = TrainConfig.from_dict(config)
    if cfg.threads is None:
        cfg.threads = max(1, (os.cpu_count() or 2) - 1)   # leave the GUI a core
    torch.set_num_threads(cfg.threads)
    try:
        spec_obj = spec_from_dict(spec)
        run = RunFolder.open(run_dir) if resume else RunFolder.create(run_dir, spec_obj, cfg.to_dict())
        Trainer(spec_obj, cfg, sinks=[events.put], run=run, control=Control(stop, pause), resume=resume).run()
    except BaseException as e:   # anything at all: the parent must hear why, in one line
        import time
        events.put(FailedEvent(step=0, time=time.time(), message=f"training process error: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}".strip()))
        traceback.print_exc()


def warm_up() -> None:
    """Pay for what a first training step needs: torch, the trainer and torch._dynamo, which torch
    imports the first time any optimizer is made (≈ 2.4 s of a 5-s cold start on 2 cores)."""
    import skimage.data  # noqa: F401  (the built-in training images)
    import torch

    import denoise_studio.core.trainer  # noqa: F401
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def warm_child(jobs, ready, events, stop, pause) -> None:
    """A training child started before it is needed: it warms up while the user is still editing,
    sets `ready`, then runs the one job it is sent ((spec, config, run_dir, resume); None: exit).
    It exits by itself if the app that started it is gone."""
    import queue

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
        train_in_child(spec, config, run_dir, events, stop, pause, resume)


def spawn_context():
    """`spawn`, never `fork`: CUDA cannot re-initialise in a forked child."""
    return mp.get_context("spawn")
