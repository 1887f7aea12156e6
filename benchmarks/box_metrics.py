"""Box metrics of one score map: the reference's per-threshold loop against `box_correctness`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/box_metrics.py [--maps 200] [--size 224] [--seed 0]

On random smooth maps (k x k noise, k in 3..14, resized bicubically to S x S and normalised) with
1-3 random boxes, in one run and interleaved map by map:
- the reference's loop (clovaai/wsolevaluation `compute_bboxes_from_scoremaps` +
  `BoxEvaluator.accumulate`, written out with cv2): 1000 thresholds, one `cv2.threshold` and one
  `cv2.findContours` each; once with all contours (MaxBoxAccV2) and once with the largest
  (MaxBoxAcc), as the reference runs two evaluators for the two numbers;
- `nc_viz.metrics.wsol.box_correctness`, which gives both at once (its compiled kernels are
  loaded, or compiled, by one call on a small map before the timing; that first call is printed).
Every map's results are checked equal (outcomes and best IoUs). Prints ms per map (wall clock)
and the ratios, and a markdown line.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from nc_viz.metrics.wsol import (IOU_DELTAS, THRESHOLDS, box_correctness, multiple_iou,  # noqa: E402
                                 normalize_scoremap, resize_scoremap)


def reference_best_ious(scoremap: np.ndarray, gt: np.ndarray, multi_contour_eval: bool) -> np.ndarray:
    """The reference's `compute_bboxes_from_scoremaps` + `BoxEvaluator.accumulate`, as written
    (`multiple_iou.max(1)` is taken again for every threshold, as there): best IoU per threshold."""
    height, width = scoremap.shape
    scoremap_image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    boxes_at, numbers = [], []
    for threshold in THRESHOLDS:
        _, thr = cv2.threshold(src=scoremap_image, thresh=int(threshold * np.max(scoremap_image)),
                               maxval=255, type=cv2.THRESH_BINARY)
        contours = cv2.findContours(image=thr, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[-2]
        if len(contours) == 0:
            boxes_at.append(np.asarray([[0, 0, 0, 0]]))
            numbers.append(1)
            continue
        if not multi_contour_eval:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        boxes_at.append(np.asarray(boxes))
        numbers.append(len(contours))
    ious = multiple_iou(np.concatenate(boxes_at, axis=0), gt)
    best, idx = [], 0
    for n in numbers:
        best.append(max(ious.max(1)[idx:idx + n]))
        idx += n
    return np.asarray(best)


def bare_loop(scoremap: np.ndarray) -> None:
    """Only the reference's 1000 `cv2.threshold` + `cv2.findContours` calls: a floor for any
    per-threshold implementation."""
    scoremap_image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    peak = np.max(scoremap_image)
    for threshold in THRESHOLDS:
        _, thr = cv2.threshold(scoremap_image, int(threshold * peak), 255, cv2.THRESH_BINARY)
        cv2.findContours(thr, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)


def random_case(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(3, 15))
    m = normalize_scoremap(resize_scoremap(rng.standard_normal((k, k)), size, dtype=np.float64))
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.integers(0, size - 10, 2)
        boxes.append([x0, y0, rng.integers(x0, size), rng.integers(y0, size)])
    return m, np.asarray(boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    box_correctness(*random_case(np.random.default_rng(-1 % 2**32), 16))
    print(f"first call (numba kernels loaded from the cache or compiled): {time.perf_counter() - t0:.2f} s")
    t_v2 = t_v1 = t_bare = t_fast = 0.0
    for _ in range(args.maps):
        m, gt = random_case(rng, args.size)
        t0 = time.perf_counter()
        best_v2 = reference_best_ious(m, gt, multi_contour_eval=True)
        t1 = time.perf_counter()
        best_v1 = reference_best_ious(m, gt, multi_contour_eval=False)
        t2 = time.perf_counter()
        bare_loop(m)
        t3 = time.perf_counter()
        ours = box_correctness(m, gt)
        t4 = time.perf_counter()
        t_v2, t_v1, t_bare, t_fast = t_v2 + t1 - t0, t_v1 + t2 - t1, t_bare + t3 - t2, t_fast + t4 - t3
        if not (np.array_equal(ours.v2, np.stack([best_v2 >= d for d in IOU_DELTAS]))
                and np.array_equal(ours.v1, best_v1 >= 0.5)
                and np.array_equal(ours.best_iou_v2, best_v2.astype(np.float32))
                and np.array_equal(ours.best_iou_v1, best_v1.astype(np.float32))):
            raise SystemExit("box_correctness differs from the reference loop")
    ms = {k: v * 1000 / args.maps for k, v in (("v2", t_v2), ("v1", t_v1), ("bare", t_bare), ("fast", t_fast))}
    print(f"{args.maps} maps of {args.size} x {args.size}, identical results on every map")
    print(f"reference as written, all contours (V2): {ms['v2']:.1f} ms/map")
    print(f"reference as written, largest contour (V1): {ms['v1']:.1f} ms/map")
    print(f"its 1000 threshold + findContours calls alone: {ms['bare']:.1f} ms/map")
    print(f"box_correctness (V1 and V2 together): {ms['fast']:.1f} ms/map")
    print(f"ratios: vs V2 as written {ms['v2'] / ms['fast']:.1f}x, vs V1 + V2 as written "
          f"{(ms['v1'] + ms['v2']) / ms['fast']:.1f}x, vs the bare 1000 calls {ms['bare'] / ms['fast']:.1f}x")
    print(f"| {args.maps} maps, {args.size} px | {ms['v2']:.1f} | {ms['v1']:.1f} | {ms['bare']:.1f} | "
          f"{ms['fast']:.1f} | {ms['v2'] / ms['fast']:.1f}x | {(ms['v1'] + ms['v2']) / ms['fast']:.1f}x | "
          f"{ms['bare'] / ms['fast']:.1f}x |")

if __name__ == "__main__":
    main()
