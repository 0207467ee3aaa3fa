"""The one place files are opened and written.

Reads: only regular files are opened (a FIFO would block forever, /dev/zero never ends), and
never more than a stated size. Writes: atomic (temp file in the same folder, fsync,
os.replace), so a crash or a full disk never leaves a half-written file, with the mode a plain
`open()` would give under the user's umask.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from denoise_studio.core.errors import DenoiseError

MiB = 2**20


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()   # what open(path, "w") would create


def check_regular(path, what: str = "file", max_bytes: int | None = None,
                  error: type[DenoiseError] = DenoiseError) -> int:
    """Stat `path` without opening it: raise `error` unless it is a regular file of at most
    max_bytes. Returns its size."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}.") from None
    except PermissionError:
        raise error(f"{path}: permission denied; make it readable.") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path} is a folder, not a {what}.")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path} is not a regular file (a pipe, socket or device); give a {what} on disk.")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path} is {st.st_size / MiB:.1f} MiB, over the {max_bytes / MiB:.0f} MiB limit for a {what}; "
                    "this is not a file Denoise Studio wrote.")
    return st.st_size


def open_regular(path, what: str = "file", max_bytes: int | None = None,
                 error: type[DenoiseError] = DenoiseError):
    """A binary file object for a regular file of at most max_bytes, or one clear `error`.

    The path is stat'ed first and opened non-blocking, then the open descriptor is checked again:
    a FIFO swapped in between can neither block the open nor be read."""
    path = Path(path)
    check_regular(path, what, max_bytes, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise error(f"{path}: permission denied; make it readable.") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e}).") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode) or (max_bytes is not None and st.st_size > max_bytes):
        f.close()
        raise error(f"{path} changed while being opened; it is not a regular {what} within the size limit.")
    return f


def read_regular(path, what: str = "file", max_bytes: int | None = None,
                 error: type[DenoiseError] = DenoiseError) -> bytes:
    """The bytes of a regular file of at most max_bytes, or one clear `error`."""
    with open_regular(path, what, max_bytes, error) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            # Ask for what the file holds (+1 to notice growth), never the whole cap: read(n)
            # reserves n bytes up front, which fails under an address-space limit.
            data = f.read(size + 1)
        except OSError as e:
            raise error(f"{path}: cannot read it ({e.strerror or e}).") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"{path} grew past the {max_bytes / MiB:.0f} MiB limit for a {what} while being read.")
    return data


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)   # mkstemp makes 0600; others on a shared run folder must read it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
