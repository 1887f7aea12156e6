"""Per-image threshold outcomes and mask histograms on disk, so that memory stays flat over any
number of images.

Box outcomes: each boxed image of one model appends one fixed-size record to a raw file: its
position in the data set, then its V1 (1000 thresholds) and V2 (3 IoU levels x 1000 thresholds)
correctness, bit-packed (`pack_correctness`): 508 bytes. They are read back once, for the paired
bootstrap, in image order, from any number of files (one per torchrun rank).

Mask histograms (PxAP's bootstrap): each masked image of one model has two histograms of
`MASK_BINS` counts (GT-positive and GT-negative pixels). The reference's bins are 0.001 wide on
the float map, not its 256 uint8 levels, and a smooth upsampled CAM fills most of them (about
700 and 950 of 1002 at 224 px), so they are stored dense, as uint32, in zlib-compressed blocks
of up to `BLOCK_IMAGES` images: about 1.6 kB per image and model at 224 px (8 kB raw). A block is `[k, nbytes]` (int64), the k positions (int64), then the compressed
`(k, 2, MASK_BINS)` counts; it is read back a block at a time.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from ...metrics.wsol import IOU_DELTAS, MASK_BINS, pack_correctness

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


BLOCK_IMAGES = 256
_HIST_DTYPE = np.dtype("<u4")


class HistogramWriter:
    """Appends one model's per-image mask histograms to `path` in compressed blocks:
    `with HistogramWriter(p) as w: w.add(position, true_hist, false_hist)`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._handle: IO[bytes] | None = None
        self._positions: list[int] = []
        self._hists: list[np.ndarray] = []

    def __enter__(self) -> HistogramWriter:
        self._handle = open(self.path, "wb")
        return self

    def add(self, position: int, true_hist: np.ndarray, false_hist: np.ndarray) -> None:
        """One image's two integer histograms `(MASK_BINS,)`."""
        if self._handle is None:
            raise RuntimeError("HistogramWriter.add outside its `with` block")
        pair = np.stack([np.asarray(true_hist), np.asarray(false_hist)])
        if pair.shape != (2, MASK_BINS) or pair.min(initial=0) < 0 or pair.max(initial=0) > np.iinfo(_HIST_DTYPE).max:
            raise ValueError(f"histograms must be two ({MASK_BINS},) counts below 2**32, got {pair.shape}")
        self._positions.append(int(position))
        self._hists.append(pair.astype(_HIST_DTYPE))
        if len(self._positions) >= BLOCK_IMAGES:
            self._flush()

    def _flush(self) -> None:
        if not self._positions or self._handle is None:
            return
        payload = zlib.compress(np.stack(self._hists).tobytes(), 1)
        self._handle.write(np.array([len(self._positions), len(payload)], dtype="<i8").tobytes())
        self._handle.write(np.array(self._positions, dtype="<i8").tobytes())
        self._handle.write(payload)
        self._positions, self._hists = [], []

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            try:
                self._flush()
            finally:
                self._handle.close()
                self._handle = None


def _blocks(path: str | os.PathLike, with_counts: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """`(positions (k,), histograms (k, 2, MASK_BINS) or None)` of each block of one file."""
    with open(path, "rb") as handle:
        while header := handle.read(16):
            k, nbytes = (int(v) for v in np.frombuffer(header, dtype="<i8"))
            positions = np.frombuffer(handle.read(8 * k), dtype="<i8").astype(np.int64)
            if not with_counts:
                handle.seek(nbytes, os.SEEK_CUR)
                yield positions, None
                continue
            raw = zlib.decompress(handle.read(nbytes))
            yield positions, np.frombuffer(raw, dtype=_HIST_DTYPE).reshape(k, 2, MASK_BINS)


def histogram_positions(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The sorted positions of every image of `paths` (8 bytes per image; counts not read)."""
    parts = [positions for p in paths for positions, _ in _blocks(p, False)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def histogram_chunks(paths: Sequence[str | os.PathLike],
                     positions: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`(columns, histograms (k, 2, MASK_BINS))` block by block, in file order; `columns` are the
    images' indices in the sorted `positions` (`histogram_positions`), i.e. in image order."""
    for path in paths:
        for block_positions, hists in _blocks(path, True):
            columns = np.searchsorted(positions, block_positions)
            if hists is None or not np.array_equal(positions[np.minimum(columns, len(positions) - 1)],
                                                    block_positions):
                raise ValueError(f"{path}: positions not among the images read before")
            yield columns, hists
