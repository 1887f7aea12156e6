"""The localisation protocol of clovaai/wsolevaluation: MaxBoxAcc, MaxBoxAccV2,
GT-known / Top-1 Loc, PxAP, plus the pointing game and the box-region helpers.

Reference (github.com/clovaai/wsolevaluation, commit 96f4b88), mirrored function by function:
- `normalize_scoremap`, `resize_scoremap`, `reference_scoremap`: `inference.py` (see `scoremap`);
- `box_correctness`, `THRESHOLDS`, `IOU_DELTAS`, `multiple_iou`: `evaluation.py`
  `compute_bboxes_from_scoremaps`, `calculate_multiple_iou`, `BoxEvaluator.accumulate` (see `boxes`);
- `BoxAccumulator`: `BoxEvaluator.num_correct` / `cnt` and `compute()` (accuracy in percent per
  delta, its maximum over tau); `evaluate_wsol`: MaxBoxAccV2 is `np.average` of the three maxima
  with `multi_contour_eval=True`, MaxBoxAcc the delta-50 maximum with `multi_contour_eval=False`;
- `MaskAccumulator`: `MaskEvaluator` (`__init__`: bins `THRESHOLDS + [1, 2, 3]`; `accumulate`:
  `np.histogram` of the scores at GT-positive and GT-negative pixels, ignore pixels dropped, as
  `get_mask` builds it: ignore = ignore region minus the foreground; `compute`: tp/fp from the reversed
  cumulative histograms, `auc = (precision[1:] * np.diff(recall))[non_zero_indices[1:]].sum() * 100`).
GT-known Loc and Top-1 Loc are the CAM paper's (Zhou et al. 2016): the largest region at
tau = 0.2 (`THRESHOLDS[200]`), IoU >= 0.5; Top-1 also needs the top-1 class right.
The pointing game is Zhang et al. 2016 as TorchRay's `PointingGame.evaluate` implements it.

Accuracies and PxAP are in percent, as the reference prints them. Accumulators hold counts and
histograms only: `merge` adds them, so shards merge exactly in any order.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .boxes import IOU_DELTAS, THRESHOLDS, BoxCorrectness, box_correctness, check_boxes, multiple_iou
from .scoremap import normalize_scoremap, reference_scoremap, resize_scoremap, scored_maps

__all__ = [
    "THRESHOLDS", "IOU_DELTAS", "BoxCorrectness", "box_correctness", "multiple_iou",
    "normalize_scoremap", "resize_scoremap", "reference_scoremap", "scored_maps",
    "BoxAccumulator", "MaskAccumulator", "MASK_BINS", "mask_histograms", "pxap_of", "pointing_hit", "pointing_tolerance", "box_union_mask",
    "box_masks", "pack_correctness", "unpack_correctness", "CAM_PAPER_TAU_INDEX",
    "max_box_acc_of", "max_box_acc_v2_of",
]

CAM_PAPER_TAU_INDEX = 200                      # THRESHOLDS[200] == 0.2
_N = len(THRESHOLDS)
_BIN_EDGES = np.append(THRESHOLDS, [1.0, 2.0, 3.0])
MASK_BINS = len(_BIN_EDGES) - 1                # 1002 bins of PxAP's histograms


def _delta_key(delta: float) -> str:
    return f"{delta:.1f}"


class BoxAccumulator:
    """Counts of correct images per (delta, tau) for V2 and per tau for V1, over images."""

    def __init__(self) -> None:
        self.correct_v2 = np.zeros((len(IOU_DELTAS), _N), dtype=np.int64)
        self.correct_v1 = np.zeros(_N, dtype=np.int64)
        self.top1_loc = 0
        self.count = 0

    def add(self, correctness: BoxCorrectness, top1_correct: bool) -> None:
        """Count one image: its correctness matrices and whether its top-1 class is right."""
        self.correct_v2 += correctness.v2
        self.correct_v1 += correctness.v1
        self.top1_loc += int(bool(top1_correct) and bool(correctness.v1[CAM_PAPER_TAU_INDEX]))
        self.count += 1

    def merge(self, other: "BoxAccumulator") -> "BoxAccumulator":
        """Add another accumulator's counts into this one (exact); returns self."""
        self.correct_v2 += other.correct_v2
        self.correct_v1 += other.correct_v1
        self.top1_loc += other.top1_loc
        self.count += other.count
        return self

    def to_state(self) -> dict[str, np.ndarray]:
        """Plain int64 arrays (for torch.distributed exchange or saving)."""
        return {"correct_v2": self.correct_v2.copy(), "correct_v1": self.correct_v1.copy(),
                "top1_loc": np.array(self.top1_loc, dtype=np.int64), "count": np.array(self.count, dtype=np.int64)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "BoxAccumulator":
        acc = cls()
        acc.correct_v2 = np.asarray(state["correct_v2"], dtype=np.int64).reshape(len(IOU_DELTAS), _N).copy()
        acc.correct_v1 = np.asarray(state["correct_v1"], dtype=np.int64).reshape(_N).copy()
        acc.top1_loc = int(state["top1_loc"])
        acc.count = int(state["count"])
        return acc

    def result(self) -> dict[str, Any]:
        """MaxBoxAcc, MaxBoxAccV2, their best taus, GT-known / Top-1 Loc and the curves, in percent.

        With no image every number is NaN.
        """
        if self.count == 0:
            nan_by_delta = {_delta_key(d): math.nan for d in IOU_DELTAS}
            return {"max_box_acc": math.nan, "max_box_acc_v2": math.nan, "box_acc_v2_by_delta": nan_by_delta,
                    "best_tau_by_delta": dict(nan_by_delta), "best_tau_v1": math.nan, "gt_known_loc": math.nan,
                    "top1_loc": math.nan, "curves": {"v2": {}, "v1": []}, "count": 0}
        curves_v2 = self.correct_v2 * 100.0 / float(self.count)
        curve_v1 = self.correct_v1 * 100.0 / float(self.count)
        maxima = curves_v2.max(axis=1)
        return {
            "max_box_acc": float(curve_v1.max()),
            "max_box_acc_v2": float(np.average(maxima)),
            "box_acc_v2_by_delta": {_delta_key(d): float(m) for d, m in zip(IOU_DELTAS, maxima)},
            "best_tau_by_delta": {_delta_key(d): float(THRESHOLDS[np.argmax(c)]) for d, c in zip(IOU_DELTAS, curves_v2)},
            "best_tau_v1": float(THRESHOLDS[np.argmax(curve_v1)]),
            "gt_known_loc": float(curve_v1[CAM_PAPER_TAU_INDEX]),
            "top1_loc": self.top1_loc * 100.0 / self.count,
            "curves": {"v2": {_delta_key(d): c.tolist() for d, c in zip(IOU_DELTAS, curves_v2)},
                       "v1": curve_v1.tolist()},
            "count": self.count,
        }


class MaskAccumulator:
    """Histograms of score-map values at GT-positive and GT-negative pixels (PxAP)."""

    def __init__(self) -> None:
        self.true_hist = np.zeros(MASK_BINS, dtype=np.float64)
        self.false_hist = np.zeros(MASK_BINS, dtype=np.float64)
        self.count = 0

    def add(self, scoremap: np.ndarray, mask: np.ndarray,
            ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One image (see `mask_histograms`); returns its two histograms."""
        true_hist, false_hist = mask_histograms(scoremap, mask, ignore)
        self.add_histograms(true_hist, false_hist)
        return true_hist, false_hist

    def add_histograms(self, true_hist: np.ndarray, false_hist: np.ndarray) -> None:
        """Count one image from its two histograms (as `mask_histograms` computes them)."""
        self.true_hist += true_hist
        self.false_hist += false_hist
        self.count += 1

    def merge(self, other: "MaskAccumulator") -> "MaskAccumulator":
        self.true_hist += other.true_hist
        self.false_hist += other.false_hist
        self.count += other.count
        return self

    def to_state(self) -> dict[str, np.ndarray]:
        return {"true_hist": self.true_hist.copy(), "false_hist": self.false_hist.copy(),
                "count": np.array(self.count, dtype=np.int64)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "MaskAccumulator":
        acc = cls()
        acc.true_hist = np.asarray(state["true_hist"], dtype=np.float64).copy()
        acc.false_hist = np.asarray(state["false_hist"], dtype=np.float64).copy()
        acc.count = int(state["count"])
        return acc

    def result(self) -> dict[str, Any]:
        """`pxap` in percent; NaN where the reference raises (no positive pixel or prediction)."""
        return {"pxap": _pxap(self.true_hist, self.false_hist), "count": self.count}


def mask_histograms(scoremap: np.ndarray, mask: np.ndarray,
                    ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image's int64 histograms `(MASK_BINS,)` of its scores at GT-positive and GT-negative
    pixels, over the reference's bins (`THRESHOLDS + [1, 2, 3]`: 0.001 wide on the float map).

    `scoremap`: normalised `(S, S)`; `mask`: foreground `(S, S)` or instances `(n, S, S)` (nonzero
    = inside); `ignore`: optional `(S, S)` region left out (its foreground pixels still count).
    """
    scoremap = np.asarray(scoremap)
    fg = np.asarray(mask) != 0
    if fg.ndim == 3:
        fg = fg.any(axis=0)
    if fg.shape != scoremap.shape:
        raise ValueError(f"mask {fg.shape} and scoremap {scoremap.shape} differ in size")
    ignored = np.zeros_like(fg) if ignore is None else (np.asarray(ignore) != 0) & ~fg
    return (np.histogram(scoremap[fg], bins=_BIN_EDGES)[0].astype(np.int64),
            np.histogram(scoremap[~fg & ~ignored], bins=_BIN_EDGES)[0].astype(np.int64))


def _pxap(true_hist: np.ndarray, false_hist: np.ndarray) -> float:
    """The reference's `MaskEvaluator.compute` on two histograms `(MASK_BINS,)`, in percent."""
    true_hist = np.asarray(true_hist, dtype=np.float64)
    false_hist = np.asarray(false_hist, dtype=np.float64)
    tp = true_hist[::-1].cumsum()
    fn = true_hist.sum() - tp
    fp = false_hist[::-1].cumsum()
    if ((tp + fn) <= 0).all() or ((tp + fp) <= 0).all():
        return math.nan
    non_zero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100)


def pxap_of(true_hist: np.ndarray, false_hist: np.ndarray) -> np.ndarray:
    """PxAP (percent) of histograms `(..., MASK_BINS)`, one per leading index (e.g. one per
    bootstrap resample): each exactly as `MaskAccumulator.result` computes it (NaN where undefined)."""
    t = np.asarray(true_hist, dtype=np.float64)
    f = np.asarray(false_hist, dtype=np.float64)
    if t.shape != f.shape or t.shape[-1:] != (MASK_BINS,):
        raise ValueError(f"histograms must both have shape (..., {MASK_BINS}), got {t.shape} and {f.shape}")
    flat_t, flat_f = t.reshape(-1, MASK_BINS), f.reshape(-1, MASK_BINS)
    out = np.array([_pxap(a, b) for a, b in zip(flat_t, flat_f)], dtype=np.float64)
    return out.reshape(t.shape[:-1])


def pack_correctness(matrix: np.ndarray) -> np.ndarray:
    """Bit-pack per-image bool matrices `(n, ..., 1000)` along the last axis (uint8, 125 bytes)."""
    return np.packbits(np.asarray(matrix, dtype=bool), axis=-1)


def unpack_correctness(packed: np.ndarray) -> np.ndarray:
    """Inverse of `pack_correctness`."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=_N).astype(bool)


def max_box_acc_of(per_image_v1: np.ndarray) -> float:
    """MaxBoxAcc (percent) of per-image V1 rows `(n_images, 1000)`, the best tau chosen on these
    images: for a bootstrap, pass a resample's rows. Equals `BoxAccumulator.result()` on them."""
    rows = np.asarray(per_image_v1, dtype=bool)
    return float((rows.sum(axis=0) * 100.0 / float(len(rows))).max())


def max_box_acc_v2_of(per_image_v2: np.ndarray) -> float:
    """MaxBoxAccV2 (percent) of per-image V2 matrices `(n_images, 3, 1000)`, each delta's best tau
    chosen on these images."""
    rows = np.asarray(per_image_v2, dtype=bool)
    return float(np.average((rows.sum(axis=0) * 100.0 / float(len(rows))).max(axis=1)))


def box_masks(boxes: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """One bool mask `(n, H, W)` per inclusive box x0, y0, x1, y1 (clipped to the map)."""
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    boxes = check_boxes(boxes)
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[y0:y1 + 1, x0:x1 + 1] = True
    return masks


def box_union_mask(boxes: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bool `(H, W)`: the union of the inclusive boxes."""
    return box_masks(boxes, size).any(axis=0)


def pointing_tolerance(size: int, base_px: float = 15.0, base_size: int = 224) -> float:
    """The pointing game's tolerance scaled with the map: 15 px at S = 224."""
    return base_px * size / base_size


def pointing_hit(scoremap: np.ndarray, gt: np.ndarray, tolerance_px: float) -> bool:
    """Pointing game: a hit when a GT pixel lies strictly within `tolerance_px` of the map's maximum.

    `gt`: a mask `(S, S)` or `(n, S, S)`, or boxes `(n, 4)` (inclusive). The maximum is the first in
    row-major order (a constant map points at the top-left pixel). As TorchRay's
    `PointingGame.evaluate`: accept where `dy**2 + dx**2 < tolerance**2`.
    """
    scoremap = np.asarray(scoremap)
    gt = np.asarray(gt)
    if gt.ndim == 2 and gt.shape[1] == 4 and gt.shape != scoremap.shape:
        region = box_union_mask(gt, scoremap.shape) if len(gt) else np.zeros(scoremap.shape, bool)
    else:
        region = (gt != 0).any(axis=0) if gt.ndim == 3 else gt != 0
    if region.shape != scoremap.shape:
        raise ValueError(f"ground truth {region.shape} and scoremap {scoremap.shape} differ in size")
    y, x = np.unravel_index(int(np.argmax(scoremap)), scoremap.shape)
    rows = (np.arange(scoremap.shape[0], dtype=np.float64) - y) ** 2
    cols = (np.arange(scoremap.shape[1], dtype=np.float64) - x) ** 2
    accept = rows[:, None] + cols[None, :] < float(tolerance_px) ** 2
    return bool((region & accept).any())
