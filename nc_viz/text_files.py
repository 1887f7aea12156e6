"""Reading small text files: class-name lists and the JSON files ncviz keeps in its own folders
(`sweep.json`, a run's `result.json`). No torch here.

A folder handed over by someone else is input from a stranger, so each file is read as the
checkpoints are: a regular file only (a FIFO would hang the run), bounded in size, decoded
strictly, and every failure is one `NcVizError` that names the file and the cause.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import NcVizError
from .safety import regular_file_problem

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
