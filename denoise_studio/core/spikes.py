"""The loss-spike guard: undo an optimizer step that threw training off, instead of losing the run.

Adam now and then takes one step too far: the loss jumps from 0.002 to 0.06, or to 8, and the
network never finds its way back (seen in bench/quality.py with unet-small at lr 4e-3 and a 3-level
U-Net at lr 2e-3). The guard keeps in-memory snapshots of the weights, their moving average and the
optimizer's state, taken every `every` steps while the loss is healthy. When a step's loss exceeds
`factor` × the median of the last `window` losses, the trainer restores the older of the two latest
snapshots (so 100–200 steps back: the trouble often starts a few steps before the jump), halves the
learning rate for the rest of the run, skips that batch and goes on.

A loss that is not finite is not a spike: the trainer stops on it (bad data gives NaN every time).
"""
from __future__ import annotations

import copy
import statistics
from collections import deque

import torch

FACTOR = 10.0       # a loss this many times the recent median is a spike (those seen were 30× and 500×)
WINDOW = 200        # losses the median is taken over
MIN_HISTORY = 50    # no judgement before this many losses (the start of a run falls fast)
EVERY = 100         # steps between snapshots
HEALTHY = 2.0       # a snapshot is taken only when the loss is within this factor of the median
LR_BACKOFF = 0.5    # the learning rate's multiplier after each recovery


class SpikeGuard:
    def __init__(self) -> None:
        self.factor, self.every, self.min_history = FACTOR, EVERY, MIN_HISTORY
        self.losses: deque[float] = deque(maxlen=WINDOW)
        self.snapshots: deque[tuple[int, dict]] = deque(maxlen=2)
        self.lr_scale = 1.0
        self.recoveries = 0

    def _median(self) -> float | None:
        return statistics.median(self.losses) if len(self.losses) >= self.min_history else None

    def is_spike(self, loss: float) -> bool:
        median = self._median()
        return median is not None and bool(self.snapshots) and loss > self.factor * median

    def observe(self, step: int, loss: float, modules: dict) -> None:
        """Record a healthy step's loss; every `every` steps snapshot `modules` (name → nn.Module or
        optimizer, each with state_dict/load_state_dict)."""
        median = self._median()
        self.losses.append(loss)
        if step % self.every == 0 and (median is None or loss <= HEALTHY * median):
            self.snapshots.append((step, {k: _clone(m.state_dict()) for k, m in modules.items()}))

    def recover(self, modules: dict) -> int:
        """Load the oldest kept snapshot into `modules`, back the learning rate off; its step."""
        step, states = self.snapshots[0]
        for k, m in modules.items():
            m.load_state_dict(_clone(states[k]))
        self.snapshots = deque([(step, states)], maxlen=2)
        self.lr_scale *= LR_BACKOFF
        self.recoveries += 1
        return step


def _clone(state: dict) -> dict:
    return {k: (v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)) for k, v in state.items()}
