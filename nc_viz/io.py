"""Atomic file writes: a temporary file in the target folder, then a rename."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Callable


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new file `.NAME.<random>.part` beside `target`, opened for writing.

    Created with mode 0o666 so that the user's umask applies, as for any file the user
    writes (tempfile.mkstemp would make every output private, 0o600).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, then rename it over `path`.

    An interrupted run leaves the old file (or none) in place, never half a file.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(target)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(exc.errno, f"cannot write ({exc.strerror})", str(target)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail early, naming `path`, when it could not be written: before any long work.

    `folder`: `path` is a folder to write files in (created if missing), else a file whose
    parent folder is checked. A probe file is created and removed, which answers for
    read-only file systems, permissions and ACLs alike.
    """
    target = Path(path)
    where = target if folder else target.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = _create_temporary(where / "probe")
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(target)) from exc
    return target
