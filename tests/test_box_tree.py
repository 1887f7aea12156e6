"""`box_correctness` (component trees, nc_viz.metrics._ctree) against a direct implementation
of the reference's loop: 1000 thresholds, `cv2.findContours(RETR_TREE)` at each, all contours'
boxes for V2, `max(contours, key=cv2.contourArea)` for V1. Every best IoU must be equal, on maps
made to hit the corner cases: plateaus and ties, one-pixel regions, regions on the border, rings
with holes and islands inside them, equal blobs (V1's order), diagonal contacts, constant maps."""
from __future__ import annotations

import numpy as np
import pytest

from nc_viz.metrics.boxes import THRESHOLDS, box_correctness, multiple_iou
from nc_viz.metrics.wsol import normalize_scoremap, resize_scoremap

cv2 = pytest.importorskip("cv2")


def reference_ious(scoremap: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's per-threshold loop: best IoU of all contours (V2), of the largest (V1)."""
    height, width = scoremap.shape
    image = (scoremap * 255).astype(np.uint8)
    best_v2, best_v1 = [], []
    for tau in THRESHOLDS:
        _, binary = cv2.threshold(image, int(tau * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        if len(contours) == 0:
            boxes = np.zeros((1, 4), np.int64)
            best_v2.append(multiple_iou(boxes, gt).max())
            best_v1.append(best_v2[-1])
            continue
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        ious = multiple_iou(np.asarray(boxes), gt).max(axis=1)
        best_v2.append(ious.max())
        largest = max(range(len(contours)), key=lambda i: cv2.contourArea(contours[i]))
        best_v1.append(ious[largest])
    return np.asarray(best_v2), np.asarray(best_v1)


def assert_as_reference(m: np.ndarray, gt: np.ndarray) -> None:
    ours = box_correctness(m, gt)
    best_v2, best_v1 = reference_ious(m, gt)
    assert np.array_equal(ours.best_iou_v2, best_v2.astype(np.float32))
    assert np.array_equal(ours.best_iou_v1, best_v1.astype(np.float32))
    assert np.array_equal(ours.v2, np.stack([best_v2 >= d for d in (0.3, 0.5, 0.7)]))
    assert np.array_equal(ours.v1, best_v1 >= 0.5)


def _smooth(rng, size, k):
    return normalize_scoremap(resize_scoremap(rng.standard_normal((k, k)), size, dtype=np.float64))


def _disc(size, cx, cy, r):
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(xx - cx, yy - cy) <= r


def make_map(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A float64 map in [0, 1] of one kind of corner case."""
    if kind == "smooth":
        return _smooth(rng, size, int(rng.integers(3, 10)))
    if kind == "noise":
        return rng.random((size, size))
    if kind == "plateaus":                                  # few levels: ties of area and value
        return np.round(_smooth(rng, size, int(rng.integers(3, 8))) * rng.integers(2, 6)) / 5
    if kind == "pixels":                                    # one-pixel regions, some on the border
        m = np.zeros((size, size))
        idx = rng.integers(0, size, (int(rng.integers(1, 12)), 2))
        m[idx[:, 0], idx[:, 1]] = rng.integers(1, 4, len(idx)) / 3
        return m
    if kind == "border":                                    # blobs cut by the image's edges
        m = np.zeros((size, size))
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.choice([0, size - 1], 2) if rng.random() < 0.5 else rng.integers(0, size, 2)
            m = np.maximum(m, _disc(size, cx, cy, rng.integers(1, max(size // 2, 2))) * rng.uniform(0.3, 1))
        return m
    if kind == "rings":                                     # holes, islands in holes, nested rings
        yy, xx = np.mgrid[:size, :size]
        c = rng.uniform(size * 0.3, size * 0.7, 2)
        d = np.hypot(xx - c[0], yy - c[1])
        m = 0.5 + 0.5 * np.cos(d * rng.uniform(0.3, 1.2)) * np.exp(-d / size * rng.uniform(0, 2))
        return np.clip(m, 0, 1)
    if kind == "twins":                                     # equal blobs: V1 decided by order
        m = np.zeros((size, size))
        r = int(rng.integers(0, max(size // 6, 1)))
        shape = _disc(2 * r + 1, r, r, r + rng.uniform(0, 0.9)) * rng.uniform(0.2, 1)
        for _ in range(int(rng.integers(2, 4))):
            x, y = rng.integers(0, size - 2 * r, 2)
            m[y:y + 2 * r + 1, x:x + 2 * r + 1] = np.maximum(m[y:y + 2 * r + 1, x:x + 2 * r + 1], shape)
        return m
    if kind == "checker":                                   # diagonal contacts (8-connectivity)
        yy, xx = np.mgrid[:size, :size]
        cell = int(rng.integers(1, 4))
        m = (((yy // cell) + (xx // cell)) % 2).astype(float) * rng.uniform(0.3, 1)
        return m * (rng.random((size, size)) < rng.uniform(0.5, 1))
    if kind == "binary":
        return (rng.random((size, size)) < rng.uniform(0.2, 0.8)).astype(float)
    if kind == "constant":
        return np.full((size, size), float(rng.choice([0.0, 0.3, 1.0])))
    raise ValueError(kind)


KINDS = ("smooth", "noise", "plateaus", "pixels", "border", "rings", "twins", "checker", "binary", "constant")


def random_gt(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    """1-3 boxes: random ones, and ones equal to a region's reference box (IoU 1 and ties)."""
    height, width = m.shape
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            level = float(rng.choice(np.unique(m)))
            ys, xs = np.nonzero(m >= level)
            if len(xs):
                i = rng.integers(len(xs))
                boxes.append([xs[i], ys[i], min(xs[i] + int(rng.integers(0, 6)), width - 1),
                              min(ys[i] + int(rng.integers(0, 6)), height - 1)])
                continue
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        boxes.append([x0, y0, rng.integers(x0, width), rng.integers(y0, height)])
    return np.asarray(boxes)


@pytest.mark.parametrize("kind", KINDS)
def test_equals_the_reference_loop(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for size in (5, 12, 24, 40):
        m = make_map(kind, rng, size)
        assert_as_reference(m, random_gt(rng, m))


def test_rectangular_maps_and_all_zero():
    rng = np.random.default_rng(11)
    for shape in ((1, 9), (9, 1), (2, 2), (7, 30), (30, 7)):
        m = normalize_scoremap(rng.random(shape))
        assert_as_reference(m, random_gt(rng, m))
    assert_as_reference(np.zeros((6, 6)), np.array([[0, 0, 0, 0], [1, 1, 3, 3]]))


def test_islands_in_holes_at_many_levels_take_the_full_pass():
    """A target pattern: nested rings, components inside holes at many levels."""
    yy, xx = np.mgrid[:48, :48]
    d = np.hypot(xx - 23.5, yy - 23.5)
    m = np.clip(0.5 + 0.5 * np.cos(d * 0.9) * np.exp(-d / 40) + 0.001 * xx, 0, 1)
    for gt in ([[20, 20, 27, 27]], [[10, 10, 37, 37]], [[0, 0, 47, 47]], [[22, 18, 26, 30]]):
        assert_as_reference(m, np.asarray(gt))


def test_a_component_inside_a_hole_at_a_few_levels_goes_to_opencv():
    """A ring around a hole with a slightly higher bump in it: the bump is a component inside the
    hole at 5 levels only, where its box must still count for V2 (OpenCV gives the boxes there)."""
    m = np.zeros((40, 40))
    m[5:35, 5:35] = 1.0
    m[10:30, 10:30] = 0.5                                   # the hole, at levels 127 to 254
    m[17:21, 15:19] = 0.52                                  # the bump: inside the hole for 127..131
    for gt in ([[15, 17, 19, 21]], [[15, 17, 18, 20]], [[5, 5, 35, 35]], [[9, 9, 31, 31]]):
        assert_as_reference(m, np.asarray(gt))
    from nc_viz.metrics import _ctree

    image = (m * 255).astype(np.uint8)
    query = np.zeros(256, bool)
    query[(THRESHOLDS * 255).astype(int)] = True
    _, _, _, islands = _ctree.level_ious(image, query, np.array([[15, 17, 19, 21]]))
    assert np.flatnonzero(islands).tolist() == [127, 128, 129, 130, 131]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_randomised_sweep_equals_the_reference_loop(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(40):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        m = make_map(kind, rng, int(rng.integers(3, 96)))
        assert_as_reference(m, random_gt(rng, m))


def test_components_inside_holes_are_found_at_every_level():
    """The Euler numbers say exactly where components lie inside holes (else V2 would miss their
    boxes): checked against RETR_TREE's depth at every level, without the full-pass shortcut."""
    from nc_viz.metrics import _ctree

    rng = np.random.default_rng(5)
    for kind in ("rings", "noise", "checker", "binary", "smooth", "pixels"):
        for size in (7, 20, 33):
            image = (make_map(kind, rng, size) * 255).astype(np.uint8)
            query = np.zeros(256, bool)
            query[:int(image.max())] = True
            _, _, _, islands = _ctree._level_ious(image, query, np.array([[0, 0, 1, 1]]), _ctree._GROUPS8,
                                                  _ctree._GROUPS4, _ctree._CREDIT, _ctree._EULER, 256)
            for level in range(256):
                expected = False
                if query[level]:
                    _, hierarchy = cv2.findContours((image > level).astype(np.uint8), cv2.RETR_TREE,
                                                    cv2.CHAIN_APPROX_SIMPLE)[-2:]
                    parents = hierarchy[0][:, 3]
                    expected = any(parents[p] >= 0 for p in parents if p >= 0)   # depth >= 2
                assert islands[level] == expected, (kind, size, level)
