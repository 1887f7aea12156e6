"""Per-image records: one CSV row per image and model, streamed to disk batch by batch.

Columns: `image_id, role, label, predicted, correct`, then the metric columns given when the
file is opened (floats written with `repr`, so they read back exactly; `nan` where a metric is
undefined for an image; empty where it was not computed). The file is written beside its
target as a temporary file and renamed into place when the writer closes without an error, so
a file named `records.csv` is always complete; memory stays flat whatever the number of rows.

Any image id round-trips: a cell holding a comma, a quote, a line feed or a carriage return is
quoted (`csv_line`), and a file name whose bytes are not UTF-8 is written as those same bytes
(Python's `surrogateescape`; read it back with `TEXT`, e.g. pandas'
`encoding_errors="surrogateescape"`), so the id still names its file.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import IO, Iterable, Mapping, Optional, Sequence

import numpy as np

from ...core.io import _create_temporary
from ...core.roles import ROLES

__all__ = ["FIXED_COLUMNS", "ROLES", "TEXT", "RecordWriter", "csv_line", "read_records", "paired_values"]

FIXED_COLUMNS = ("image_id", "role", "label", "predicted", "correct")
TEXT = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}   # how records files are opened
_SPECIAL = (",", '"', "\r", "\n")


def csv_line(cells: Sequence[str]) -> str:
    """One CSV line ending in LF, a cell quoted (quotes doubled) when it holds a comma, a quote,
    CR or LF. (csv.writer with an LF line end leaves a lone CR unquoted, and csv.reader then
    ends the row there.)"""
    return ",".join('"' + c.replace('"', '""') + '"' if any(s in c for s in _SPECIAL) else c for c in cells) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


class RecordWriter:
    """Append rows batch by batch: `with RecordWriter(path, metrics) as w: w.write(rows)`."""

    def __init__(self, path: str | os.PathLike, metrics: Sequence[str]) -> None:
        clash = [m for m in metrics if m in FIXED_COLUMNS]
        if clash or len(set(metrics)) != len(metrics):
            raise ValueError(f"metric columns must be distinct and not {FIXED_COLUMNS}, got {list(metrics)}")
        self.path = Path(path)
        self.columns = FIXED_COLUMNS + tuple(metrics)
        self.rows_written = 0
        self._handle: Optional[IO[str]] = None
        self._tmp: Optional[Path] = None

    def __enter__(self) -> "RecordWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = _create_temporary(self.path)
        self._handle = os.fdopen(fd, "w", **TEXT)
        self._handle.write(csv_line(self.columns))
        return self

    def write(self, rows: Iterable[Mapping[str, object]]) -> None:
        """Append one batch of rows (mappings column -> value) and flush it to disk."""
        if self._handle is None:
            raise RuntimeError("RecordWriter.write outside its `with` block")
        for row in rows:
            unknown = set(row) - set(self.columns)
            if unknown:
                raise ValueError(f"unknown record columns {sorted(unknown)}; the file has {list(self.columns)}")
            if row.get("role") not in ROLES:
                raise ValueError(f"role must be one of {ROLES}, got {row.get('role')!r}")
            self._handle.write(csv_line([_cell(row.get(c)) for c in self.columns]))
            self.rows_written += 1
        self._handle.flush()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._handle is None or self._tmp is None:
            return
        self._handle.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def _parse(column: str, text: str) -> object:
    if column in ("image_id", "role"):
        return text
    if column in ("label", "predicted"):
        return int(text) if text else None
    if column == "correct":
        return text == "1" if text else None
    return float(text) if text else math.nan


def read_records(path: str | os.PathLike) -> list[dict[str, object]]:
    """The rows of a records file, typed: ints, a bool `correct`, float metrics (NaN if empty)."""
    with open(path, **TEXT) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return [{c: _parse(c, v) for c, v in zip(header, row)} for row in reader]


def paired_values(rows: Sequence[Mapping[str, object]], metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`(image_ids, baseline values, nc values)` of `metric`, aligned by image (images that
    lack either model's row are left out), ready for `metrics.bootstrap`."""
    by_role: dict[str, dict[str, float]] = {role: {} for role in ROLES}
    for row in rows:
        value = row.get(metric)
        by_role[str(row["role"])][str(row["image_id"])] = math.nan if value is None else float(value)  # type: ignore[arg-type]
    ids = [i for i in by_role["baseline"] if i in by_role["nc"]]
    return (ids, np.array([by_role["baseline"][i] for i in ids], dtype=np.float64),
            np.array([by_role["nc"][i] for i in ids], dtype=np.float64))
