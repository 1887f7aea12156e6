"""Atomic file writes: a temporary file in the target folder, then a rename."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Callable

NAME_MAX = 255                      # bytes in one file name (Linux, macOS, Windows)
_TEMPORARY = re.compile(r"(\..*)[0-9a-f]{8}\.part", re.S)   # what `_create_temporary` names


def temporary_prefix(name: str) -> str:
    """The start of the temporary names of a file called `name`: `.NAME.`, or, where
    `.NAME.<8 hex>.part` would pass NAME_MAX bytes, `.HEAD~DIGEST.` (HEAD: the longest start of
    the name that fits; DIGEST: 8 hex digits of the whole name's sha256), so that any legal name
    can be written and each name keeps its own temporaries."""
    whole = f".{name}."
    if len(os.fsencode(whole)) + len("01234567.part") <= NAME_MAX:
        return whole
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    room = NAME_MAX - len(f"..~{digest}.01234567.part")
    head = name
    while len(os.fsencode(head)) > room:
        head = head[:-1]
    return f".{head}~{digest}."


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new file `.NAME.<random>.part` beside `target` (see `temporary_prefix` for long
    names), opened for writing.

    Created with mode 0o666 so that the user's umask applies, as for any file the user
    writes (tempfile.mkstemp would make every output private, 0o600).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    prefix = temporary_prefix(target.name)
    while True:
        tmp = target.with_name(f"{prefix}{secrets.token_hex(4)}.part")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def remove_leftover_temporaries(targets: Iterable[Path]) -> int:
    """Remove the temporary files an interrupted run left for any of `targets` (the files of
    `targets`' names only, in their own folders); the number removed. Call it while no other
    process writes these files (under the folder's lock)."""
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(Path(target).parent, set()).add(temporary_prefix(Path(target).name))
    removed = 0
    for folder, prefixes in by_folder.items():
        try:
            entries = [e for e in os.scandir(folder) if e.name.endswith(".part")]
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if match and match.group(1) in prefixes and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, then rename it over `path`.

    An interrupted run leaves the old file (or none) in place, never half a file.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(target)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail early, naming `path`, when it could not be written: before any long work.

    `folder`: `path` is a folder to write files in, else a file (which may not be a folder).
    Nothing is created: the nearest folder that exists is probed with a file created and
    removed at once, which answers for read-only file systems, permissions and ACLs alike.
    """
    target = Path(path)
    if not folder and target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(target))
    existing = target if folder else target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a folder", str(existing))
        fd, probe = _create_temporary(existing / "probe")
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(target)) from exc
    return target
