"""Runs one training child process and turns its events into Qt signals.

A QTimer drains the event queue in the GUI thread (no thread touches a widget), and
notices when the child dies without saying why (killed, crashed, out of memory).

With `prewarm()`, a spare child starts ahead of time and pays for importing torch while the
user is still editing, so that Start shows a first step in about a second instead of five;
each run still gets a process of its own, and a new spare is started when a run ends.

When the window closes during a run, the run either stops and saves (`stop_and_wait`) or goes
on headless (`detach`): the child then outlives the app and still writes its run folder, which
`denoise-studio watch` or the app's Open run can follow later.
"""
from __future__ import annotations

import multiprocessing.process
import queue
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from denoise_studio.core.events import FailedEvent
from denoise_studio.core.worker import spawn_context, start_ignoring_sigint, warm_child

POLL_MS = 50
MAX_EVENTS_PER_POLL = 500


@dataclass
class Child:
    """A training child process (core.worker.warm_child) and what the app holds of it: its one job
    goes in `jobs`, `ready` is set once it has imported what training needs, its events come back on
    `events`, and `stop`, `pause`, `detach` are flags it reads between steps. Keep every queue and
    flag referenced while it runs: a child still starting up unpickles them by name."""
    process: Any
    jobs: Any
    ready: Any
    events: Any
    stop: Any
    pause: Any
    detach: Any


class TrainingSession(QObject):
    event = Signal(object)      # every core event, in order
    ended = Signal(object)      # the FinishedEvent or FailedEvent that ended the run

    def __init__(self, parent=None):
        super().__init__(parent)
        self.ctx = spawn_context()
        self.process = None
        self.queue = None
        self.stop_flag = None
        self.pause_flag = None
        self.run_dir = None
        self.last_step = 0
        self.last_checkpoint = None
        self._done = True
        self.keep_warm = False   # keep a spare child ready (prewarm), again after each run
        self.spare: Child | None = None   # a child launched ahead of time, waiting for a job (see _launch)
        self.child: Child | None = None   # the child running the current run
        self.detach_flag = None
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    @property
    def running(self) -> bool:
        return not self._done

    @property
    def paused(self) -> bool:
        return self.pause_flag is not None and self.pause_flag.is_set()

    def _launch(self) -> Child:
        """A training child (core.worker.warm_child): it imports what training needs, then waits for
        its one job."""
        jobs, ready, events = self.ctx.Queue(), self.ctx.Event(), self.ctx.Queue()
        stop, pause, detach = self.ctx.Event(), self.ctx.Event(), self.ctx.Event()
        process = self.ctx.Process(target=warm_child, name="denoise-studio-training", daemon=True,
                                   args=(jobs, ready, events, stop, pause, detach))
        start_ignoring_sigint(process)   # Ctrl+C in the terminal is the app's to handle
        return Child(process, jobs, ready, events, stop, pause, detach)

    def prewarm(self) -> None:
        """Launch a spare child now (if there is none), and again after every run."""
        self.keep_warm = True
        if self.spare is None and not self.running:
            self.spare = self._launch()

    def discard_spare(self) -> None:
        if self.spare is not None:
            process, jobs = self.spare.process, self.spare.jobs
            self.spare = None
            jobs.put(None)
            process.join(1)
            if process.is_alive():
                process.kill()

    def start(self, spec: dict, config: dict, run_dir: str, resume: bool = False) -> None:
        if self.running:
            raise RuntimeError("a run is already in progress")
        self.run_dir = run_dir
        self.last_step, self.last_checkpoint = 0, None
        spare, self.spare = self.spare, None
        if spare is not None and not spare.process.is_alive():
            spare.process.join(0)   # it died while idle: reap it, launch another
            spare = None
        # The spare (warm, or still warming: either way ahead) or a new child.
        child = self.child = spare or self._launch()
        self.process, self.queue = child.process, child.events
        self.stop_flag, self.pause_flag, self.detach_flag = child.stop, child.pause, child.detach
        child.jobs.put((spec, config, run_dir, resume))
        self._done = False
        self.timer.start()

    def pause(self, on: bool) -> None:
        if self.pause_flag is not None:
            (self.pause_flag.set if on else self.pause_flag.clear)()

    def stop(self) -> None:
        if self.stop_flag is not None:
            self.stop_flag.set()
            self.pause_flag.clear()

    def kill(self) -> None:
        """Hard stop: the run folder keeps its last complete checkpoint, and readers see no
        terminal event with a free lock ("the writer is gone")."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(2)

    def stop_and_wait(self, timeout: float = 60.0):
        """Stop the run and wait until the child has written its checkpoint and terminal event;
        returns that event (or a FailedEvent if the child had to be killed after `timeout`)."""
        ended = []
        self.ended.connect(ended.append)
        try:
            self.stop()
            deadline = time.monotonic() + timeout
            while self.running and time.monotonic() < deadline:
                self.poll()
                if self.running:
                    time.sleep(POLL_MS / 1000)
            if self.running:
                self.kill()
                self.poll()
        finally:
            self.ended.disconnect(ended.append)
        return ended[-1] if ended else None

    def detach(self) -> int | None:
        """Let the run go on headless after the app exits; returns the child's pid. The child stops
        sending events, and multiprocessing forgets it, so the app's exit neither waits for it nor
        terminates it."""
        if not self.running or self.process is None:
            return None
        self.detach_flag.set()
        self.timer.stop()
        multiprocessing.process._children.discard(self.process)   # noqa: SLF001  (no public way)
        pid = self.process.pid
        self.process = None
        self._done = True
        return pid

    def shutdown(self) -> None:
        """The window is closing: stop any run keeping its checkpoint, end the spare."""
        self.keep_warm = False
        if self.running:
            self.stop_and_wait()
        self.discard_spare()

    def poll(self) -> None:
        for _ in range(MAX_EVENTS_PER_POLL):
            try:
                ev = self.queue.get_nowait()
            except (queue.Empty, EOFError, OSError):
                break
            self._handle(ev)
            if self._done:
                return
        if not self._done and self.process is not None and not self.process.is_alive():
            # Drain what it said before dying, then report the death itself.
            time.sleep(0.05)
            while True:
                try:
                    self._handle(self.queue.get_nowait())
                except (queue.Empty, EOFError, OSError):
                    break
                if self._done:
                    return
            code = self.process.exitcode
            why = {-9: "it was killed (SIGKILL), perhaps by the system for lack of memory",
                   -11: "it crashed (segmentation fault)", -15: "it was terminated"}.get(code, f"exit code {code}")
            self._handle(FailedEvent(step=self.last_step, time=time.time(),
                                     message=f"the training process ended unexpectedly: {why}.",
                                     checkpoint=self.last_checkpoint))

    def _handle(self, ev) -> None:
        self.last_step = max(self.last_step, getattr(ev, "step", 0))
        if ev.name == "checkpoint" and not ev.best:
            self.last_checkpoint = ev.path
        self.event.emit(ev)
        if ev.name in ("finished", "failed"):
            self._done = True
            self.timer.stop()
            if self.process is not None:
                self.process.join(5)
                if self.process.is_alive():
                    self.process.kill()
            self.ended.emit(ev)
            if self.keep_warm:
                self.prewarm()
