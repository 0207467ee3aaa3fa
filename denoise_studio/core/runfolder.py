"""A run folder holds everything needed to watch, resume or reuse a run:

    spec.json  config.json  events.jsonl  writer.lock  checkpoints/{last,best}.safetensors  previews/step_*.png

writer.lock names the one process writing the folder (see runlock).
events.jsonl is appended one complete line at a time, so a reader following it while the
run writes (the GUI, `denoise-studio watch`, another machine on a shared filesystem) only
ever needs to skip a torn last line.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np

from denoise_studio.core.errors import CheckpointError, DenoiseError
from denoise_studio.core.events import TERMINAL, Event, PreviewEvent, event_from_json
from denoise_studio.core.fileio import atomic_write_text, read_regular
from denoise_studio.core.images import save_image
from denoise_studio.core.limits import cap
from denoise_studio.core.runlock import LOCK_NAME, RunLock, writer
from denoise_studio.core.spec import ArchitectureSpec, load_spec_file

READ_CHUNK = 16 * 2**20   # events read per call; a longer "line" is damage, skipped


def preview_path(step: int) -> str:
    """Where a run folder keeps the preview of `step`, relative to the folder, as events.jsonl records it
    (the trainer names it in the PreviewEvent before emitting; readers can compute it too)."""
    return f"previews/step_{step:07d}.png"


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)
        self._events = None
        self._lock: RunLock | None = None
        self.damaged_lines = 0   # events.jsonl lines that were not valid events, skipped

    spec_path = property(lambda self: self.path / "spec.json")
    config_path = property(lambda self: self.path / "config.json")
    events_path = property(lambda self: self.path / "events.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    previews = property(lambda self: self.path / "previews")

    @classmethod
    def create(cls, path, spec: ArchitectureSpec, config: dict, new: bool = False) -> RunFolder:
        """Become the folder's one writer, then write spec.json and config.json. Refused in one
        line when another process writes there (or, with `new`, when the folder already holds a
        run); a refusal changes nothing in the folder and leaves nothing behind."""
        run = cls(path)
        made = _make_dirs(run.path)
        lock_existed = (run.path / LOCK_NAME).exists()
        try:
            run._lock = RunLock.acquire(run.path)
        except BaseException:
            _undo(run.path, made, lock_existed)
            raise
        try:
            if new and (run.spec_path.exists() or run.events_path.exists()):
                raise DenoiseError(f"{run.path} already holds a run; pass --resume to continue it, or choose "
                                   "another folder.")
            for sub in (run.checkpoints, run.previews):
                if sub.exists() and not sub.is_dir():
                    raise DenoiseError(f"{sub} is a file where the run keeps its {sub.name}; move it away or "
                                       "choose another folder.")
            if run.events_path.exists() and not run.events_path.is_file():
                raise DenoiseError(f"{run.events_path} is not a regular file; the run folder is damaged: move it "
                                   "away and choose another folder.")
            for sub in (run.checkpoints, run.previews):
                if not sub.exists():
                    sub.mkdir()
                    made.append(sub)
            spec.save(run.spec_path)
            atomic_write_text(run.config_path, json.dumps(config, indent=2) + "\n")
        except BaseException as e:
            run._lock.release()
            run._lock = None
            _undo(run.path, made, lock_existed)
            if isinstance(e, OSError):
                raise DenoiseError(f"cannot write the run folder {run.path}: {e.strerror or e}; choose a "
                                   "folder you can write to.") from None
            raise
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

    def record(self, **settings) -> None:
        """Add what the run decided at start-up (e.g. the precision path) to config.json."""
        atomic_write_text(self.config_path, json.dumps({**self.config(), **settings}, indent=2) + "\n")

    def config(self) -> dict:
        """The run's settings as written; a missing or damaged config.json is refused, never guessed."""
        fix = "it cannot be resumed exactly; start a new run with `denoise-studio train`."
        if not self.config_path.exists():
            raise CheckpointError(f"{self.path} has no config.json; {fix}")
        data = read_regular(self.config_path, "run config", cap("CONFIG_BYTES"), CheckpointError)
        try:
            d = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise CheckpointError(f"{self.config_path} is not valid JSON; {fix}") from None
        if not isinstance(d, dict):
            raise CheckpointError(f"{self.config_path} holds a {type(d).__name__}, not an object of settings; {fix}")
        return d

    def checkpoint(self, which: str = "last") -> Path | None:
        p = self.checkpoints / f"{which}.safetensors"
        return p if p.is_file() else None

    def resume_checkpoint(self) -> Path:
        """The checkpoint a resume continues from, or one line saying why there is none: a resume never
        restarts from step 0 in place of a run it cannot find."""
        p = self.checkpoints / "last.safetensors"
        if p.is_file():
            return p
        why = "is not a regular file" if os.path.lexists(p) else "is missing"
        raise CheckpointError(f"{p} {why}, so {self.path} cannot be resumed without guessing; start a new run "
                              "(another --out), or restore that checkpoint.")

    def writer(self) -> dict | None:
        """Who is writing this run now (see runlock.writer), or None."""
        return writer(self.path)

    # --- the sink ---
    def __call__(self, event: Event) -> None:
        if isinstance(event, PreviewEvent) and event.images:
            rel = preview_path(event.step)
            save_image(self.path / rel, preview_strip(event.images))
            if event.path != rel:   # events are shared by every sink: write a copy, never change it
                event = replace(event, path=rel)
        if self._events is None:
            self._events = open(self.events_path, "a", encoding="utf-8")
        self._events.write(json.dumps(event.to_json()) + "\n")
        self._events.flush()

    def close(self) -> None:
        """Stop writing: the terminal event is on disk before the lock is released, so a reader that
        finds the lock free and no terminal event knows the writer died."""
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def read_events(self, offset: int = 0) -> tuple[list[Event], int]:
        """Events from byte `offset` on, and the offset after the last complete line."""
        events, offset, bad = _read_events(self.events_path, offset)
        self.damaged_lines += bad
        return events, offset


def read_events(path, offset: int = 0) -> tuple[list[Event], int]:
    events, offset, _ = _read_events(path, offset)
    return events, offset


def _read_events(path, offset: int) -> tuple[list[Event], int, int]:
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [], offset, 0
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path} is not a regular file; the run folder is damaged: move it away and point "
                              "at the real run.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            f.seek(offset)
            data = f.read(READ_CHUNK)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e}).") from None
    end = data.rfind(b"\n") + 1     # a torn last line waits for the next read
    bad = 0
    if end == 0 and len(data) == READ_CHUNK:
        return [], offset + len(data), 1      # one absurdly long line: skip it
    events = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            ev = event_from_json(json.loads(line))
        except (ValueError, RecursionError):
            ev = None
        if ev is None:
            bad += 1
        else:
            events.append(ev)
    return events, offset + end, bad


def gone_message(run_path, last_checkpoint_step: int | None) -> str:
    """What a reader says about a run whose writer died without a terminal event."""
    where = (f"last checkpoint at step {last_checkpoint_step}" if last_checkpoint_step is not None
             else "no checkpoint was written")
    return (f"the writer is gone; {where}. Resume with `denoise-studio train --resume --out {run_path}`."
            if last_checkpoint_step is not None else f"the writer is gone; {where}.")


def is_terminal(event: Event) -> bool:
    return event.name in TERMINAL


def _make_dirs(path: Path) -> list[Path]:
    """Create path and missing parents; the ones created, outermost first (to undo)."""
    missing = []
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    if path.exists() and not path.is_dir():
        raise DenoiseError(f"{path} is a file, not a folder; choose another folder for the run.")
    made: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            _undo(path, made, True)
            raise DenoiseError(f"cannot create the run folder {path}: {e.strerror or e}; choose a folder you "
                               "can write to.") from None
        made.append(d)
    return made


def _undo(path: Path, made: list[Path], lock_existed: bool) -> None:
    if made and made[0] in (path, *path.parents):
        shutil.rmtree(made[0], ignore_errors=True)
        return
    for d in made:   # subfolders made inside a folder that was there before
        shutil.rmtree(d, ignore_errors=True)
    if not lock_existed:
        try:
            (path / LOCK_NAME).unlink()
        except OSError:
            pass


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
