"""Reading files a user hands over: only regular files (a FIFO would hang the run, a device
never ends), small text and JSON files bounded in size and decoded strictly, every failure one
`NcVizError` that names the file and the cause. No torch here.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import NcVizError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(path: Path) -> str | None:
    """What `path` is when it is not a regular file (following links), None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def regular_file_problem(path: Path, what: str) -> str | None:
    """Why `path` cannot be read as `what` ("checkpoint file", "image"), or None when it can."""
    kind = file_kind(path)
    if kind is None:
        return None
    if kind == "missing":
        return f"no such {what}"
    link = f"a symbolic link to {os.path.realpath(path)}, " if os.path.islink(path) else ""
    return f"{link}{kind}, not a {what}; only regular files are read"


def require_regular_file(path: Path, what: str, error: type[NcVizError] = NcVizError) -> Path:
    """Raise `error` (`PATH: reason`) unless `path` is a regular file (or a link to one)."""
    problem = regular_file_problem(path, what)
    if problem:
        raise error(f"{path}: {problem}")
    return path


MAX_TEXT_BYTES = 64 * 1024 * 1024   # far above any class list (ImageNet-21k's is about 0.5 MB)


def read_text_file(path: str | os.PathLike, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of `path` (a byte-order mark dropped); NcVizError `PATH: reason` when it is
    not a regular file, is larger than `limit` bytes, cannot be read or is not UTF-8."""
    path = Path(path)
    problem = regular_file_problem(path, what)
    if problem:
        raise NcVizError(f"{path}: {problem}")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise NcVizError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if len(data) > limit:
        raise NcVizError(f"{path}: larger than {limit // (1024 * 1024)} MB; not a {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NcVizError(f"{path}: not UTF-8 text; not a {what}") from None


def read_json_object(path: str | os.PathLike, what: str, fix: str = "") -> dict[str, Any]:
    """The JSON object in `path`; NcVizError `PATH: reason` for anything else (`fix`: what the
    user can do about it, appended to the message)."""
    hint = f"; {fix}" if fix else ""
    text = read_text_file(path, what)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise NcVizError(f"{path}: not a readable {what} (not JSON: {exc}){hint}") from None
    except RecursionError:
        raise NcVizError(f"{path}: not a readable {what} (JSON nested too deeply){hint}") from None
    if not isinstance(value, dict):
        raise NcVizError(f"{path}: not a readable {what} (a JSON {type(value).__name__}, not an object){hint}")
    return value
