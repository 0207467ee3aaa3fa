"""Training events: plain dataclasses a Trainer emits to its sinks (a callback, a queue to
the GUI, a run folder's events.jsonl). One JSON object a line in events.jsonl."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


@dataclass
class Event:
    step: int
    time: float          # Unix time, seconds

    name = "event"

    def to_json(self) -> dict:
        d = {"event": self.name}
        for f in fields(self):
            if f.metadata.get("json", True):
                v = getattr(self, f.name)
                d[f.name] = None if isinstance(v, float) and not math.isfinite(v) else v
        return d


@dataclass
class StartedEvent(Event):
    total_steps: int = 0
    device: str = "cpu"
    params: int = 0
    world_size: int = 1
    resumed_from: int | None = None
    skipped: list | None = None      # one message per unreadable training image
    name = "started"


@dataclass
class StepEvent(Event):
    loss: float = 0.0
    lr: float = 0.0
    images_per_s: float = 0.0
    grad_norms: list | None = None   # per block, every few steps
    name = "step"


@dataclass
class EvalEvent(Event):
    psnr: float = 0.0        # dB on the validation crops at σ = 25
    loss: float = 0.0
    noisy_psnr: float = 0.0  # the noisy input's PSNR, for scale
    name = "eval"


@dataclass
class PreviewEvent(Event):
    psnr: float = 0.0
    path: str | None = None
    # noisy, noise (predicted), reconstruction, clean: (H, W, C) float arrays; not written to JSON
    images: dict = field(default_factory=dict, metadata={"json": False})
    name = "preview"


@dataclass
class CheckpointEvent(Event):
    path: str = ""
    best: bool = False
    name = "checkpoint"


@dataclass
class FinishedEvent(Event):
    reason: str = "steps"    # steps, time or stopped
    name = "finished"


@dataclass
class FailedEvent(Event):
    message: str = ""
    checkpoint: str | None = None   # the last good checkpoint, kept
    name = "failed"


EVENT_TYPES = {cls.name: cls for cls in (StartedEvent, StepEvent, EvalEvent, PreviewEvent, CheckpointEvent,
                                         FinishedEvent, FailedEvent)}


def event_from_json(d: dict) -> Event | None:
    cls = EVENT_TYPES.get(d.get("event"))
    if cls is None:
        return None
    names = {f.name for f in fields(cls) if f.metadata.get("json", True)}
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError:
        return None
