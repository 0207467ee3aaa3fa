"""A run folder holds everything needed to watch, resume or reuse a run:

    spec.json  config.json  events.jsonl  checkpoints/{last,best}.safetensors  previews/step_*.png

events.jsonl is appended one complete line at a time, so a reader following it while the
run writes (the GUI, `denoise-studio watch`, another machine on a shared filesystem) only
ever needs to skip a torn last line.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from denoise_studio.core.errors import CheckpointError
from denoise_studio.core.events import Event, PreviewEvent, event_from_json
from denoise_studio.core.fileio import atomic_write_text
from denoise_studio.core.images import save_image
from denoise_studio.core.spec import ArchitectureSpec, load_spec_file


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)
        self._events = None

    spec_path = property(lambda self: self.path / "spec.json")
    config_path = property(lambda self: self.path / "config.json")
    events_path = property(lambda self: self.path / "events.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    previews = property(lambda self: self.path / "previews")

    @classmethod
    def create(cls, path, spec: ArchitectureSpec, config: dict) -> RunFolder:
        run = cls(path)
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        run.previews.mkdir(exist_ok=True)
        spec.save(run.spec_path)
        atomic_write_text(run.config_path, json.dumps(config, indent=2) + "\n")
        return run

    @classmethod
    def open(cls, path) -> RunFolder:
        run = cls(path)
        if not run.spec_path.is_file():
            raise CheckpointError(f"{run.path} is not a run folder (no spec.json); train with "
                                  "`denoise-studio train ... --out FOLDER` to make one.")
        return run

    def spec(self) -> ArchitectureSpec:
        return load_spec_file(self.spec_path)

    def config(self) -> dict:
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def checkpoint(self, which: str = "last") -> Path | None:
        p = self.checkpoints / f"{which}.safetensors"
        return p if p.is_file() else None

    # --- the sink ---
    def __call__(self, event: Event) -> None:
        if isinstance(event, PreviewEvent) and event.images:
            path = self.previews / f"step_{event.step:07d}.png"
            save_image(path, preview_strip(event.images))
            event.path = str(path.relative_to(self.path))
        if self._events is None:
            self._events = open(self.events_path, "a", encoding="utf-8")
        self._events.write(json.dumps(event.to_json()) + "\n")
        self._events.flush()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def read_events(self, offset: int = 0) -> tuple[list[Event], int]:
        """Events from byte `offset` on, and the offset after the last complete line."""
        return read_events(self.events_path, offset)


def read_events(path, offset: int = 0) -> tuple[list[Event], int]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1     # a torn last line waits for the next read
    events = []
    for line in data[:end].splitlines():
        try:
            ev = event_from_json(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if ev is not None:
            events.append(ev)
    return events, offset + end


STRIP_GAP = 4   # white pixels between the tiles of a preview strip


def preview_strip(images: dict) -> np.ndarray:
    """noisy | predicted noise (mid-grey = 0) | reconstruction | clean, side by side."""
    noise = images["noise"]
    scale = max(3 * float(np.std(noise)), 1e-6)
    tiles = [images["noisy"], np.clip(0.5 + 0.5 * noise / scale, 0, 1), images["reconstruction"], images["clean"]]
    gap = np.ones((tiles[0].shape[0], STRIP_GAP) + tiles[0].shape[2:], dtype=np.float32)
    parts = []
    for t in tiles:
        parts += [np.clip(t, 0, 1), gap]
    return np.concatenate(parts[:-1], axis=1)


def split_strip(strip: np.ndarray) -> dict:
    """The tiles of a preview_strip back, for showing a saved preview (noise re-centred on 0)."""
    w = (strip.shape[1] - 3 * STRIP_GAP) // 4
    tiles = [strip[:, i * (w + STRIP_GAP): i * (w + STRIP_GAP) + w] for i in range(4)]
    return {"noisy": tiles[0], "noise": tiles[1] - 0.5, "reconstruction": tiles[2], "clean": tiles[3]}
