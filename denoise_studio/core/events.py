"""Training events: immutable (frozen) dataclasses a Trainer emits to its sinks (a callback, a queue to
the GUI, a run folder's events.jsonl). One JSON object a line in events.jsonl. Every sink sees the
same event whatever the sinks' order: none may change it (a sink that needs another value writes a
`dataclasses.replace` copy).

`event_from_json` is the one place a line from disk becomes an event: every field is checked
against its declared type, so a damaged or hand-edited file gives a skipped line, never an
exception deep inside `watch` or the app.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields

# How a run ended. steps/time: as planned; stopped: Stop in the app or the window closing;
# interrupted: Ctrl+C (SIGINT); terminated: SIGTERM, or the app that started the run died.
FINISH_REASONS = {"steps": "all steps done", "time": "time limit reached", "stopped": "stopped",
                  "interrupted": "interrupted (Ctrl+C)", "terminated": "terminated"}
TERMINAL = ("finished", "failed")


@dataclass(frozen=True)
class Event:
    step: int
    time: float          # Unix time, seconds

    name = "event"

    def to_json(self) -> dict:
        d: dict = {"event": self.name}
        for f in fields(self):
            if f.metadata.get("json", True):
                v = getattr(self, f.name)
                d[f.name] = None if isinstance(v, float) and not math.isfinite(v) else v
        return d


@dataclass(frozen=True)
class StartedEvent(Event):
    total_steps: int = 0
    device: str = "cpu"
    params: int = 0
    world_size: int = 1
    resumed_from: int | None = None
    skipped: list | None = None      # one message per unreadable training image
    time_limit: float | None = None  # seconds, when the run also ends on time
    precision: str | None = None     # the numeric path chosen, e.g. "bf16 autocast (CPU has amx_bf16)"
    name = "started"


@dataclass(frozen=True)
class StepEvent(Event):
    loss: float = 0.0
    lr: float = 0.0
    images_per_s: float = 0.0
    grad_norms: list | None = None   # per block, every few steps
    name = "step"


@dataclass(frozen=True)
class EvalEvent(Event):
    psnr: float = 0.0        # dB on the validation crops at σ = 25
    loss: float = 0.0
    noisy_psnr: float = 0.0  # the noisy input's PSNR, for scale
    name = "eval"


@dataclass(frozen=True)
class PreviewEvent(Event):
    psnr: float = 0.0
    path: str | None = None   # in a run folder: previews/step_NNNNNNN.png (runfolder.preview_path)
    # noise_std, true_noise_std (0–255 scale), psnr, noisy_psnr (dB): numbers for the image pane
    stats: dict | None = None
    # noisy, noise (predicted), reconstruction, clean: (H, W, C) float arrays; not written to JSON
    images: dict = field(default_factory=dict, metadata={"json": False})
    name = "preview"


@dataclass(frozen=True)
class CheckpointEvent(Event):
    path: str = ""
    best: bool = False
    name = "checkpoint"


@dataclass(frozen=True)
class FinishedEvent(Event):
    reason: str = "steps"    # a key of FINISH_REASONS
    name = "finished"


@dataclass(frozen=True)
class FailedEvent(Event):
    message: str = ""
    checkpoint: str | None = None   # the last good checkpoint, kept
    name = "failed"


@dataclass(frozen=True)
class RecoveredEvent(Event):
    """A loss spike was undone (core/spikes.py): the weights went back to `restored_step`'s."""
    loss: float = 0.0            # the spiking loss
    restored_step: int = 0
    lr_scale: float = 1.0        # the learning rate's multiplier from now on
    message: str = ""
    name = "recovered"


EVENT_TYPES = {cls.name: cls for cls in (StartedEvent, StepEvent, EvalEvent, PreviewEvent, CheckpointEvent,
                                         FinishedEvent, FailedEvent, RecoveredEvent)}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _convert(kind: str, v):
    """v as declared by `kind` (the annotation's text), or raise ValueError."""
    optional = kind.endswith("| None")
    base = kind.split("|")[0].strip()
    if v is None:
        if optional:
            return None
        if base == "float":      # to_json writes a non-finite float as null
            return math.nan
        raise ValueError
    if base == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if base == "float" and _number(v):
        return float(v)
    if base == "str" and isinstance(v, str):
        return v
    if base == "bool" and isinstance(v, bool):
        return v
    if base == "list" and isinstance(v, list):
        return v
    if base == "dict" and isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return v
    raise ValueError


# Beyond the declared type: values whose meaning is a closed set or a shape.
_EXTRA_CHECKS = {
    "step": lambda v: v >= 0,
    "restored_step": lambda v: v >= 0,
    "reason": lambda v: v in FINISH_REASONS,
    "grad_norms": lambda v: v is None or all(_number(x) or x is None for x in v),
    "skipped": lambda v: v is None or all(isinstance(x, str) for x in v),
    "stats": lambda v: v is None or all(_number(x) or x is None for x in v.values()),
}


def event_from_json(d) -> Event | None:
    """The event a parsed events.jsonl line describes, or None when the line is not a valid event
    (not an object, an unknown or non-string `event`, a field of the wrong type or out of range)."""
    if not isinstance(d, dict) or not isinstance(d.get("event"), str):
        return None
    cls = EVENT_TYPES.get(d["event"])
    if cls is None:
        return None
    values = {}
    for f in fields(cls):
        if not f.metadata.get("json", True):
            continue
        if f.name not in d:
            if f.default is MISSING and f.default_factory is MISSING:
                return None     # step and time are required
            continue
        try:
            v = _convert(str(f.type), d[f.name])
        except ValueError:
            return None
        check = _EXTRA_CHECKS.get(f.name)
        if check is not None and not check(v):
            return None
        values[f.name] = v
    return cls(**values)


def dispatch(handlers: dict, ev: Event, *args) -> None:
    """Call the handler `handlers` has for this event's type, if any: the one way the front ends react
    to events (a table keyed by event class, so a renamed or new event type cannot be matched by a
    misspelt string)."""
    handler = handlers.get(type(ev))
    if handler is not None:
        handler(ev, *args)
