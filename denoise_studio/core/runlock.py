"""One writer per run folder, held by an OS advisory lock.

The writer keeps `writer.lock` open with an exclusive flock for the run's whole life; the OS
releases it when the process ends in any way (exit, crash, SIGKILL, power loss), so it can never
go stale the way a pid file does. The file's content (pid, host, command) only names the
holder in messages. Readers (`watch`, the app's Open run) never hold it; they probe it to
tell a live writer from one that died without a terminal event.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from denoise_studio.core.errors import DenoiseError

LOCK_NAME = "writer.lock"
ACQUIRE_TRIES = 10     # a reader's probe holds a shared lock for microseconds: retry past it


class RunBusyError(DenoiseError):
    """Another process is writing the run folder."""


def _describe(info: dict | None) -> str:
    if not info:
        return "another process"
    who = f"process {info.get('pid', '?')} on {info.get('host', '?')}"
    cmd = info.get("command")
    return f"{who} ({cmd[:120]})" if isinstance(cmd, str) and cmd else who


def _read_info(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode("utf-8"))
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def _program() -> str:
    first = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    if os.path.basename(first) == "__main__.py":   # python -m package
        return f"python -m {os.path.basename(os.path.dirname(first))}"
    return os.path.basename(first)


class RunLock:
    """The exclusive writer lock of one run folder; `release()` or process exit frees it."""

    def __init__(self, fd: int, path: Path):
        self.fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, folder) -> RunLock:
        path = Path(folder) / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise DenoiseError(f"{folder}: cannot create its lock file ({e.strerror or e}); "
                               "choose a folder you can write to.") from None
        for attempt in range(ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == ACQUIRE_TRIES - 1:
                    info = _read_info(fd)
                    os.close(fd)
                    raise RunBusyError(f"{folder} is being written by {_describe(info)}; wait for it to "
                                       "finish or stop it, or choose another folder.") from None
                time.sleep(0.02)
            except OSError as e:   # a filesystem without locks
                os.close(fd)
                raise DenoiseError(f"{folder}: cannot lock it ({e.strerror or e}); put the run on a local "
                                   "disk or a filesystem with file locks.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join([_program(), *sys.argv[1:]]),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        except OSError:
            pass   # the lock holds without its description
        return cls(fd, path)

    def release(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)   # closing the last descriptor drops the flock
            self.fd = None

    __del__ = release   # a writer object dropped without close() must not hold the folder


def writer(folder) -> dict | None:
    """Who holds the folder's writer lock ({} when unnamed), or None when nobody does.
    Never blocks and never creates the lock file."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd) or {}
        except OSError:
            return None
        return None   # closing fd below drops the shared lock at once
    finally:
        os.close(fd)


def describe_writer(info: dict | None) -> str:
    return _describe(info)
