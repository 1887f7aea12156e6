"""Per-image threshold outcomes on disk, so that memory stays flat over any number of images.

Each boxed image of one model appends one fixed-size record to a raw file: its position in the
data set, then its V1 (1000 thresholds) and V2 (3 IoU levels x 1000 thresholds) correctness,
bit-packed (`pack_correctness`): 508 bytes. They are read back once, for the paired
bootstrap, in image order, from any number of files (one per torchrun rank).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from ..metrics.wsol import IOU_DELTAS, pack_correctness

_PACKED = 125  # 1000 thresholds, bit-packed
OUTCOME_DTYPE = np.dtype([("position", "<i8"), ("v1", "u1", (_PACKED,)), ("v2", "u1", (len(IOU_DELTAS), _PACKED))])


class OutcomeWriter:
    """Appends one model's per-image outcomes to `path`: `with OutcomeWriter(p) as w: w.add(...)`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> OutcomeWriter:
        self._handle = open(self.path, "wb")
        return self

    def add(self, position: int, v1: np.ndarray, v2: np.ndarray) -> None:
        """One image's bool V1 `(1000,)` and V2 `(3, 1000)` correctness."""
        if self._handle is None:
            raise RuntimeError("OutcomeWriter.add outside its `with` block")
        record = np.zeros(1, OUTCOME_DTYPE)
        record["position"], record["v1"], record["v2"] = position, pack_correctness(v1), pack_correctness(v2)
        self._handle.write(record.tobytes())

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_outcomes(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The records of all `paths`, in image order (a structured array of OUTCOME_DTYPE)."""
    parts = [np.fromfile(p, dtype=OUTCOME_DTYPE) for p in paths]
    merged = np.concatenate(parts) if parts else np.zeros(0, OUTCOME_DTYPE)
    return merged[np.argsort(merged["position"], kind="stable")]
