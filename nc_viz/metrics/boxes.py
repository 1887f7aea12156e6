"""Box correctness of one score map over the reference's 1000 thresholds, from component trees.

Mirrors clovaai/wsolevaluation `evaluation.py` (commit 96f4b88):
- `THRESHOLDS`        <- `cam_threshold_list = list(np.arange(0, 1, cam_curve_interval))`, 0.001;
- `IOU_DELTAS`        <- `iou_threshold_list` [30, 50, 70], compared as `>= (_THRESHOLD/100)`;
- `multiple_iou`      <- `calculate_multiple_iou` (inclusive pixels: `+ 1` in widths and heights,
  a non-positive denominator gives IoU 0);
- `box_correctness`   <- `compute_bboxes_from_scoremaps` + `BoxEvaluator.accumulate`:
  `scoremap_image = (scoremap * 255).astype(np.uint8)`; per threshold tau
  `cv2.threshold(thresh=int(tau * max), THRESH_BINARY)` (foreground is `value > thresh`);
  `cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)` (outer and hole contours); no contour gives
  the box `[0, 0, 0, 0]`; V1 (`multi_contour_eval=False`) keeps `max(contours, key=cv2.contourArea)`
  (the first of equal areas); each box is `cv2.boundingRect` -> `[x, y, x + w, y + h]` with `x1`, `y1`
  clipped to `width - 1`, `height - 1`; the image is correct at (tau, delta) when the best IoU of
  its boxes with any ground-truth box is `>= delta`.

How, exactly: `int(tau * max)` takes at most 256 values, and `_ctree.level_ious` gives, for every
one of them at once, the best IoU of all contours' boxes and that of the largest contour's box,
from union-find passes over the pixels sorted by value (component boxes, hole boxes, polygon
areas; see its docstring for what it relies on). Two cases are handed back to OpenCV, so the
result stays the reference's by construction: levels where contours of equal largest area have
different IoUs (RETR_TREE's order decides; `max(..., key=cv2.contourArea)` there, as the
reference), and the few levels with components inside holes (`RETR_LIST`'s boxes there), each on
the foreground's bounding box only. Both are rare on smooth maps (benchmarks/README.md).

Measured (benchmarks/box_metrics.py, one run each, 224 x 224 smooth random maps): 18.7-20.2x
less than the reference's bare 1000 `findContours` calls on the same map (about 2.2-2.6 ms against
43-52 ms), 97-110x / 138-152x less than its V2 / V1 + V2 evaluators as written. The 20x aimed at
is reached in one run of three only (figures and where the time goes: benchmarks/README.md).
The kernels need numba (compiled on first use, then cached); the fallbacks need OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["THRESHOLDS", "IOU_DELTAS", "BoxCorrectness", "box_correctness", "multiple_iou",
           "scoremap_to_uint8"]

THRESHOLDS = np.arange(0, 1, 0.001)
IOU_DELTAS = (0.3, 0.5, 0.7)
_V1_DELTA_INDEX = IOU_DELTAS.index(0.5)


@dataclass(frozen=True)
class BoxCorrectness:
    """Per-threshold outcome of one image.

    `v2` bool `(3, 1000)`: best IoU over all contour boxes and GT boxes `>= delta`, one row per
    `IOU_DELTAS`; `v1` bool `(1000,)`: the largest contour's box, delta 0.5;
    `best_iou_v2` / `best_iou_v1` float32 `(1000,)`: the best IoUs themselves.
    """

    v2: np.ndarray
    v1: np.ndarray
    best_iou_v2: np.ndarray
    best_iou_v1: np.ndarray


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("box metrics need OpenCV: pip install opencv-python-headless "
                          "(it comes with the 'gradcam' and 'test' extras)") from exc
    return cv2


def check_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boxes as an int64 `(n, 4)` array x0, y0, x1, y1 (inclusive), with x0 <= x1, y0 <= y1, >= 0."""
    boxes = np.asarray(boxes)
    if boxes.ndim == 1 and boxes.size == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4), got {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"boxes must be integers (the reference's int(x * S / W)), got {boxes.dtype}")
    boxes = boxes.astype(np.int64)
    if (boxes < 0).any() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError("boxes must be non-negative x0, y0, x1, y1 with x0 <= x1 and y0 <= y1")
    return boxes


def multiple_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """IoU matrix `(n_a, n_b)` of inclusive-pixel boxes, as the reference's `calculate_multiple_iou`."""
    a = np.asarray(box_a, dtype=np.int64)[:, None, :]
    b = np.asarray(box_b, dtype=np.int64)[None, :, :]
    inter = (np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
             * np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1))
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    denominator = area_a + area_b - inter
    degenerate = denominator <= 0
    ious = inter / np.where(degenerate, 1, denominator)
    ious[degenerate] = 0
    return ious


def scoremap_to_uint8(scoremap: np.ndarray) -> np.ndarray:
    """`(scoremap * 255).astype(np.uint8)` after the reference's validity checks (2-D, in [0, 1])."""
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2 or scoremap.size == 0:
        raise ValueError(f"scoremap must be a non-empty (H, W) array, got shape {scoremap.shape}")
    if not np.issubdtype(scoremap.dtype, np.floating):
        raise ValueError(f"scoremap must be floating point, got {scoremap.dtype}")
    if scoremap.dtype == np.float64:                                # one compiled pass
        from ._ctree import float64_to_uint8

        image, valid = float64_to_uint8(np.ascontiguousarray(scoremap))
    else:
        valid = bool(scoremap.min() >= 0 and scoremap.max() <= 1)   # False with a NaN too
        image = (scoremap * 255).astype(np.uint8) if valid else None
    if not valid:
        raise ValueError("scoremap must be in [0, 1] without NaN (normalize_scoremap makes it so)")
    return image


def _first_last_above(profile: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each level, the first and last index where `profile > level` (profile: row or column maxima)."""
    above = profile[None, :] > levels[:, None]
    first = above.argmax(axis=1)
    last = len(profile) - 1 - above[:, ::-1].argmax(axis=1)
    return first, last


def _windows(image: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """`(levels, 4)` top, bottom, left, right (exclusive ends) of the bounding box of
    `image > level` widened by one background pixel, clipped to the image."""
    row_max, col_max = image.max(axis=1), image.max(axis=0)
    top, bottom = _first_last_above(row_max, levels)
    left, right = _first_last_above(col_max, levels)
    return np.stack([np.maximum(top - 1, 0), bottom + 2, np.maximum(left - 1, 0), right + 2], axis=1)


def _contours(image: np.ndarray, level: int, window: np.ndarray, mode: int) -> list:
    """`cv2.findContours(mode, CHAIN_APPROX_SIMPLE)` of `image > level` (`cv2.threshold`,
    THRESH_BINARY, as the reference) run on the window only: outside it there is only background
    connected to the outside, so the contours and their order are the whole image's; `offset`
    restores image coordinates."""
    cv2 = _cv2()
    top, bottom, left, right = (int(v) for v in window)
    _, binary = cv2.threshold(image[top:bottom, left:right], level, 255, cv2.THRESH_BINARY)
    return list(cv2.findContours(binary, mode, cv2.CHAIN_APPROX_SIMPLE, offset=(left, top))[-2])


def _reference_boxes(image: np.ndarray, contours: list) -> np.ndarray:
    """`[x, y, min(x + w, W - 1), min(y + h, H - 1)]` of each contour's `cv2.boundingRect`."""
    cv2 = _cv2()
    height, width = image.shape
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64).reshape(-1, 4)
    return np.stack([rects[:, 0], rects[:, 1], np.minimum(rects[:, 0] + rects[:, 2], width - 1),
                     np.minimum(rects[:, 1] + rects[:, 3], height - 1)], axis=1)


def _largest_contour_iou(image: np.ndarray, level: int, window: np.ndarray, gt: np.ndarray) -> float:
    """V1 where areas tie: `max(contours, key=cv2.contourArea)` in RETR_TREE's order, its best IoU."""
    contours = _contours(image, level, window, _cv2().RETR_TREE)
    return float(multiple_iou(_reference_boxes(image, [max(contours, key=_cv2().contourArea)]), gt).max())


def _all_contours_iou(image: np.ndarray, level: int, window: np.ndarray, gt: np.ndarray) -> float:
    """V2 at a level with components inside holes: the best IoU of all contours' boxes."""
    contours = _contours(image, level, window, _cv2().RETR_LIST)
    return float(multiple_iou(_reference_boxes(image, contours), gt).max())


def box_correctness(scoremap: np.ndarray, gt_boxes: np.ndarray) -> BoxCorrectness:
    """Correctness of one normalised S x S score map at every (tau, delta), V2 and V1.

    `scoremap` float in [0, 1] (float64 reproduces the reference's uint8 map exactly);
    `gt_boxes` int `(n, 4)` x0, y0, x1, y1 inclusive, already in score-map pixels.
    """
    image = scoremap_to_uint8(scoremap)
    gt = np.ascontiguousarray(check_boxes(gt_boxes))
    if len(gt) == 0:
        raise ValueError("an image needs at least one ground-truth box")
    from ._ctree import level_ious

    peak = int(image.max())
    thresholds = (THRESHOLDS * peak).astype(np.int64)              # == int(tau * np.max(...))
    query = np.zeros(256, dtype=bool)
    query[thresholds] = peak > 0                                   # levels with a foreground
    best_v2, best_v1, undecided, islands = level_ious(image, query, gt)
    for fallback, best, settle in ((undecided, best_v1, _largest_contour_iou),
                                   (islands, best_v2, _all_contours_iou)):
        levels = np.flatnonzero(fallback)
        if len(levels):
            for level, window in zip(levels.tolist(), _windows(image, levels)):
                best[level] = settle(image, level, window, gt)
    iou_v2, iou_v1 = best_v2[thresholds], best_v1[thresholds]
    return BoxCorrectness(v2=iou_v2 >= np.asarray(IOU_DELTAS)[:, None], v1=iou_v1 >= IOU_DELTAS[_V1_DELTA_INDEX],
                          best_iou_v2=iou_v2.astype(np.float32), best_iou_v1=iou_v1.astype(np.float32))
