"""The wsolevaluation protocol (nc_viz.metrics.wsol) against fixtures computed by hand and
against the reference's own per-threshold loop written out with cv2."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nc_viz.metrics import wsol
from nc_viz.metrics.wsol import (IOU_DELTAS, THRESHOLDS, BoxAccumulator, MaskAccumulator, box_correctness,
                                 box_union_mask, multiple_iou, normalize_scoremap, pointing_hit, resize_scoremap)

S = 64


def _plateaus(*regions: tuple[int, int, int, int, float], size: int = S) -> np.ndarray:
    """A float64 map, zero except the given (x0, y0, x1, y1, value) rectangles (inclusive)."""
    m = np.zeros((size, size))
    for x0, y0, x1, y1, value in regions:
        m[y0:y1 + 1, x0:x1 + 1] = value
    return m


def _levels(m: np.ndarray) -> np.ndarray:
    """The reference's integer threshold of every tau."""
    image = (m * 255).astype(np.uint8)
    return (THRESHOLDS * image.max()).astype(int)


# ----------------------------------------------------------------------------- no OpenCV needed

def test_thresholds_and_deltas_are_the_references():
    assert len(THRESHOLDS) == 1000 and THRESHOLDS[0] == 0 and THRESHOLDS[200] == 0.2
    assert np.array_equal(THRESHOLDS, np.arange(0, 1, 0.001))
    assert IOU_DELTAS == (0.3, 0.5, 0.7) and [d * 100 for d in IOU_DELTAS] == [30, 50, 70]


def test_iou_counts_pixels_inclusively():
    a = np.array([[0, 0, 9, 9]])                    # 10 x 10 = 100 pixels
    b = np.array([[5, 5, 14, 14], [0, 0, 0, 0], [20, 20, 30, 30]])
    iou = multiple_iou(a, b)
    assert iou[0, 0] == pytest.approx(25 / 175)     # 5 x 5 overlap
    assert iou[0, 1] == pytest.approx(1 / 100)      # a one-pixel box is one pixel
    assert iou[0, 2] == 0
    assert multiple_iou(np.array([[3, 4, 3, 4]]), np.array([[3, 4, 3, 4]]))[0, 0] == 1


def test_normalize_scoremap_constant_and_nan_give_zeros():
    assert not normalize_scoremap(np.full((4, 4), 3.0)).any()
    m = np.arange(16.0).reshape(4, 4)
    m[1, 1] = np.nan
    assert not normalize_scoremap(m).any()
    n = normalize_scoremap(np.array([[2.0, 4.0], [6.0, 10.0]], dtype=np.float32))
    assert n.dtype == np.float32 and np.array_equal(n, np.array([[0, 0.25], [0.5, 1]], dtype=np.float32))


def test_resize_keeps_a_map_at_size_and_a_constant_map():
    m = np.random.default_rng(0).random((8, 8))
    assert np.array_equal(resize_scoremap(m, 8, dtype=np.float64), m)
    assert np.allclose(resize_scoremap(np.full((7, 7), 2.5), 224), 2.5)
    assert resize_scoremap(m, (10, 12)).shape == (10, 12)


def test_reference_scoremap_is_float64_in_unit_range():
    m = wsol.reference_scoremap(np.random.default_rng(1).standard_normal((7, 7)).astype(np.float32), 32)
    assert m.dtype == np.float64 and m.shape == (32, 32) and m.min() == 0 and m.max() == 1


def test_pxap_by_hand_with_an_ignore_region():
    scores = np.array([[0.9, 0.8], [0.6, 0.3]])
    mask = np.array([[1, 0], [1, 0]])
    # ranked: 0.9 T, 0.8 F, 0.6 T, 0.3 F -> AP = 1 * 1/2 + 2/3 * 1/2
    acc = MaskAccumulator()
    acc.add(scores, mask)
    assert acc.result()["pxap"] == pytest.approx(100 * (0.5 + 1 / 3))
    # ignoring the 0.8 pixel: 0.9 T, 0.6 T, 0.3 F -> AP = 1
    ignored = MaskAccumulator()
    ignored.add(scores, mask, ignore=np.array([[1, 1], [0, 0]]))   # the foreground pixel still counts
    assert ignored.result()["pxap"] == pytest.approx(100.0)
    merged = MaskAccumulator.from_state(acc.to_state()).merge(ignored)
    assert np.array_equal(merged.true_hist, acc.true_hist + ignored.true_hist)
    assert math.isnan(MaskAccumulator().result()["pxap"])


def test_pointing_tolerance_is_strict():
    m = np.zeros((40, 40))
    m[10, 10] = 1.0
    assert pointing_hit(m, np.array([[25, 10, 30, 12]]), tolerance_px=15) is False   # 15 px away
    assert pointing_hit(m, np.array([[24, 10, 30, 12]]), tolerance_px=15) is True    # 14 px away
    mask = np.zeros((40, 40), bool)
    mask[10, 10] = True
    assert pointing_hit(m, mask, tolerance_px=1) is True
    assert wsol.pointing_tolerance(448) == 30


def test_energy_and_coverage_of_boxes_reuse_the_mask_metrics():
    from oracles import box_coverage, energy_in_boxes

    from nc_viz.metrics.map_kernels import energy_and_coverage

    cam = np.zeros((10, 10), np.float32)
    cam[1, 1], cam[8, 8], cam[5, 5] = 3.0, 1.0, -4.0                    # negative values carry no energy
    boxes = np.array([[0, 0, 2, 2], [7, 7, 9, 9], [4, 0, 4, 0]])
    resized = cam.astype(np.float64)
    for fraction, covered in ((0.3, 2 / 3), (0.5, 1 / 3)):              # 1/3 >= 0.3, 0 < 0.3
        energy, coverage = energy_and_coverage(resized, wsol.box_masks(boxes, cam.shape), fraction)
        assert energy == 1.0                                            # all the positive values are boxed
        assert coverage == pytest.approx(covered) == box_coverage(cam, boxes, fraction=fraction)
    assert energy_and_coverage(resized, wsol.box_masks(boxes[:1], cam.shape), 0.5)[0] == pytest.approx(0.75)
    assert energy_in_boxes(cam, boxes[:1]) == pytest.approx(0.75)


def test_box_union_mask_is_inclusive():
    m = box_union_mask(np.array([[1, 2, 3, 2], [0, 0, 0, 0]]), 5)
    assert m.sum() == 3 + 1 and m[2, 1:4].all() and m[0, 0]


def _outcome(v1: tuple[int, int], v2: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]) -> wsol.BoxCorrectness:
    """Correct at the tau indices [start, stop) given for V1 and for each delta row of V2."""
    def row(span: tuple[int, int]) -> np.ndarray:
        out = np.zeros(1000, bool)
        out[span[0]:span[1]] = True
        return out

    return wsol.BoxCorrectness(v2=np.stack([row(s) for s in v2]), v1=row(v1),
                               best_iou_v2=np.zeros(1000, np.float32), best_iou_v1=np.zeros(1000, np.float32))


def test_accumulator_counts_merges_and_restores():
    """Three images whose V1 curve, V2 rows (one per delta) and class outcomes all differ, so each
    number of `result()` comes from its own curve; worked out by hand below."""
    one = _outcome((100, 500), ((0, 800), (100, 600), (300, 400)))      # class right
    two = _outcome((150, 1000), ((0, 1000), (400, 1000), (350, 360)))   # class wrong
    three = _outcome((150, 200), ((200, 300), (0, 0), (0, 0)))         # class right
    a, b = BoxAccumulator(), BoxAccumulator()
    a.add(one, top1_correct=True)
    a.add(two, top1_correct=False)
    b.add(three, top1_correct=True)
    r = BoxAccumulator.from_state(a.to_state()).merge(b).result()
    assert r["count"] == 3
    # V1: 1 image on [100, 150), 3 on [150, 200), 2 on [200, 500), 1 on [500, 1000)
    assert r["curves"]["v1"][120] == pytest.approx(100 / 3) and r["curves"]["v1"][600] == pytest.approx(100 / 3)
    assert r["max_box_acc"] == pytest.approx(100.0) and r["best_tau_v1"] == pytest.approx(0.15)
    # tau index 200 (0.2): V1 right for one and two; Top-1 Loc also needs the class: one only
    assert r["gt_known_loc"] == pytest.approx(200 / 3) and r["top1_loc"] == pytest.approx(100 / 3)
    # V2: delta 0.3 all three on [200, 300); 0.5 two images on [400, 600); 0.7 two on [350, 360)
    assert r["box_acc_v2_by_delta"] == pytest.approx({"0.3": 100.0, "0.5": 200 / 3, "0.7": 200 / 3})
    assert r["best_tau_by_delta"] == pytest.approx({"0.3": 0.2, "0.5": 0.4, "0.7": 0.35})
    assert r["max_box_acc_v2"] == pytest.approx((100 + 200 / 3 + 200 / 3) / 3)
    assert len(r["curves"]["v2"]["0.7"]) == 1000 and r["curves"]["v2"]["0.5"][150] == pytest.approx(100 / 3)
    assert wsol.max_box_acc_of(np.stack([one.v1, two.v1, three.v1])) == r["max_box_acc"]
    assert wsol.max_box_acc_v2_of(np.stack([one.v2, two.v2, three.v2])) == r["max_box_acc_v2"]
    packed = wsol.pack_correctness(np.stack([one.v2, two.v2]))
    assert packed.shape == (2, 3, 125) and np.array_equal(wsol.unpack_correctness(packed)[1], two.v2)
    empty = BoxAccumulator().result()
    assert empty["count"] == 0 and math.isnan(empty["max_box_acc"]) and math.isnan(empty["gt_known_loc"])


# ----------------------------------------------------------------------------- box metrics (OpenCV)

cv2 = pytest.importorskip("cv2")


def test_box_is_bounding_rect_plus_one_as_the_reference():
    m = _plateaus((20, 10, 39, 19, 1.0))
    exact = box_correctness(m, np.array([[20, 10, 40, 20]]))            # [x, y, x + w, y + h]
    assert exact.v2.all() and exact.v1.all() and (exact.best_iou_v2 == 1).all()
    tight = box_correctness(m, np.array([[20, 10, 39, 19]]))
    assert np.allclose(tight.best_iou_v1, 200 / 231)


def test_box_on_the_border_is_clipped():
    m = _plateaus((50, 54, 63, 63, 1.0))
    c = box_correctness(m, np.array([[50, 54, 63, 63]]))
    assert (c.best_iou_v2 == 1).all() and (c.best_iou_v1 == 1).all()


def test_constant_map_gives_the_empty_box():
    zero = np.zeros((S, S))
    c = box_correctness(zero, np.array([[0, 0, 0, 0]]))
    assert c.v2.all() and c.v1.all()
    c = box_correctness(zero, np.array([[0, 0, 1, 1]]))                 # IoU 1/4
    assert not c.v2.any() and np.allclose(c.best_iou_v2, 0.25)


def test_two_blobs_v1_takes_the_largest_v2_any():
    m = _plateaus((2, 2, 31, 31, 0.6), (45, 45, 50, 50, 1.0))
    c = box_correctness(m, np.array([[45, 45, 51, 51]]))                 # the small blob's box
    both_present = _levels(m) < 153                                     # 0.6 * 255 = 153
    assert c.v2.all()
    assert np.array_equal(c.v1, ~both_present) and both_present.any() and (~both_present).any()


def test_hole_contours_give_boxes_too():
    m = _plateaus((10, 10, 29, 29, 1.0))
    m[17:23, 15:21] = 0                                                 # hole: x 15..20, y 17..22
    hole_box = np.array([[14, 16, 22, 24]])                             # boundingRect of its border, + 1
    c = box_correctness(m, hole_box)
    assert (c.best_iou_v2 == 1).all()                                   # V2 sees the hole's contour
    assert (c.best_iou_v1 < 1).all()                                    # V1 keeps the outer one


def _reference_best_ious(scoremap: np.ndarray, gt: np.ndarray, multi_contour_eval: bool) -> np.ndarray:
    """wsolevaluation's compute_bboxes_from_scoremaps + BoxEvaluator.accumulate, line by line."""
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
    ious = multiple_iou(np.concatenate(boxes_at, axis=0), gt).max(1)
    best, idx = [], 0
    for n in numbers:
        best.append(max(ious[idx:idx + n]))
        idx += n
    return np.asarray(best)


def _random_case(rng: np.random.Generator, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(3, 15))
    m = normalize_scoremap(resize_scoremap(rng.standard_normal((k, k)), size, dtype=np.float64))
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.integers(0, size - 10, 2)
        boxes.append([x0, y0, rng.integers(x0, size), rng.integers(y0, size)])
    return m, np.asarray(boxes)


def _assert_same_as_reference(m: np.ndarray, gt: np.ndarray) -> wsol.BoxCorrectness:
    ours = box_correctness(m, gt)
    best_v2 = _reference_best_ious(m, gt, multi_contour_eval=True)
    best_v1 = _reference_best_ious(m, gt, multi_contour_eval=False)
    assert np.array_equal(ours.v2, np.stack([best_v2 >= d for d in IOU_DELTAS]))
    assert np.array_equal(ours.v1, best_v1 >= 0.5)
    assert np.array_equal(ours.best_iou_v2, best_v2.astype(np.float32))
    assert np.array_equal(ours.best_iou_v1, best_v1.astype(np.float32))
    return ours


def test_equal_areas_break_ties_as_the_reference():
    m = _plateaus((5, 5, 14, 14, 1.0), (40, 40, 49, 49, 1.0), (40, 5, 49, 14, 0.5))
    for gt in ([[5, 5, 15, 15]], [[40, 40, 50, 50]], [[40, 5, 50, 15]]):
        _assert_same_as_reference(m, np.asarray(gt))


@pytest.mark.parametrize("seed", range(5))
def test_fast_path_equals_the_reference_loop(seed):
    rng = np.random.default_rng(seed)
    whole, halves = BoxAccumulator(), [BoxAccumulator(), BoxAccumulator()]
    rows = []
    for i in range(10):                                                 # 50 maps over the 5 seeds
        c = _assert_same_as_reference(*_random_case(rng))
        whole.add(c, top1_correct=i % 3 == 0)
        halves[i % 2].add(c, top1_correct=i % 3 == 0)
        rows.append(c)
    assert halves[0].merge(halves[1]).result() == whole.result()        # shards merge exactly
    assert wsol.max_box_acc_v2_of(np.stack([c.v2 for c in rows])) == whole.result()["max_box_acc_v2"]


def test_noisy_map_with_holes_and_many_regions():
    rng = np.random.default_rng(7)
    m = normalize_scoremap(resize_scoremap(rng.standard_normal((40, 40)), 96, dtype=np.float64))
    _assert_same_as_reference(m, np.array([[10, 10, 40, 50], [60, 5, 90, 30]]))


def test_resize_equals_cv2_bicubic_in_float64():
    rng = np.random.default_rng(3)
    for shape, size in [((7, 7), 224), ((14, 14), 224), ((7, 9), 100), ((300, 200), 224)]:
        cam = rng.standard_normal(shape)
        expected = cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC)
        assert np.array_equal(resize_scoremap(cam, size, dtype=np.float64), expected)


def test_compiled_score_map_equals_the_numpy_mirror_bit_for_bit():
    """`scored_maps` (evaluate's compiled path) gives the same float64 bits as resize + min-max in
    numpy (itself equal to cv2), and the same zeros for constant and NaN maps; maps with an
    infinity or already at S take the numpy path."""
    from nc_viz.metrics.wsol import scored_maps

    rng = np.random.default_rng(11)
    cams = [rng.standard_normal(shape) * scale for shape, scale in
            [((7, 7), 1.0), ((7, 7), 1e-6), ((14, 14), 30.0), ((7, 9), 1.0), ((300, 200), 1.0), ((1, 1), 1.0)]]
    cams += [np.maximum(rng.standard_normal((7, 7)), 0), np.full((7, 7), 2.5), np.where(np.eye(7) > 0, np.nan, 1.0),
             np.where(np.eye(7) > 0, np.inf, 1.0), rng.standard_normal((224, 224))]
    for cam in cams:
        for size in (224, 100):
            with np.errstate(invalid="ignore"):   # inf - inf in the numpy mirror (both take it for inf maps)
                resized, scoremap = scored_maps(cam, size)
                expected = resize_scoremap(cam, size, dtype=np.float64)
            assert resized.dtype == scoremap.dtype == np.float64
            assert np.array_equal(resized, expected, equal_nan=True)
            assert np.array_equal(scoremap, normalize_scoremap(expected))


def test_compiled_energy_and_coverage_equal_the_torch_metrics():
    """evaluate's compiled energy / instance coverage give the library's torch numbers."""
    import torch

    from oracles import energy_in_masks, instance_coverage

    from nc_viz.metrics.map_kernels import energy_and_coverage

    rng = np.random.default_rng(5)
    for case in range(40):
        resized = resize_scoremap(rng.standard_normal((7, 7)) + (case % 3 - 1), 64, dtype=np.float64)
        regions = np.zeros((int(rng.integers(1, 4)), 64, 64), bool)
        for region in regions:
            x0, y0 = rng.integers(0, 50, 2)
            region[y0:y0 + rng.integers(0, 20), x0:x0 + rng.integers(1, 20)] = True
        if case == 0:
            resized = -np.abs(resized)                          # no positive energy
        if case == 1:
            resized[3, 4] = np.nan                              # torch: 0.0 for both
        if case == 2:
            resized[40, 40] = np.inf                            # torch: energy NaN
        fraction = [0.5, 0.3, 1.0, 0.0][case % 4]
        energy, coverage = energy_and_coverage(resized, regions, fraction)
        raw, truth = torch.from_numpy(resized.astype(np.float32)), torch.from_numpy(regions)
        expected = energy_in_masks(raw, truth)
        # float64 sums here, float32 sums in torch's order there: about 1e-8 apart
        assert energy == pytest.approx(expected, rel=1e-6, abs=1e-7, nan_ok=True)
        assert coverage == instance_coverage(raw, truth, fraction)   # the same float32 share


def test_pointing_hit_without_tolerance_is_the_torch_pointing_game():
    """evaluate's pointing game at a tolerance of 1 px (only the maximum's own pixel) is the torch
    reference's: the first maximum in row-major order inside the masks' union."""
    import torch
    from oracles import pointing_game

    rng = np.random.default_rng(9)
    hits = 0
    for case in range(60):
        scoremap = rng.standard_normal((24, 24)).astype(np.float32)
        if case % 5 == 0:
            scoremap = np.round(scoremap)                       # ties: the first maximum counts
        if case % 7 == 0:
            scoremap[:] = 1.0                                   # a constant map points at the top-left pixel
        masks = np.zeros((int(rng.integers(0, 3)), 24, 24), bool)
        for mask in masks:
            y, x = rng.integers(0, 20, 2)
            mask[y:y + rng.integers(1, 12), x:x + rng.integers(1, 12)] = True
        expected = pointing_game(torch.from_numpy(scoremap), torch.from_numpy(masks))
        assert pointing_hit(scoremap, masks, tolerance_px=1) is expected
        hits += expected
    assert 0 < hits < 60                                        # both outcomes were checked


@pytest.mark.parametrize("kind", ["relu", "plateaus", "noise", "binary"])
def test_corner_maps_equal_the_reference_loop(kind):
    rng = np.random.default_rng(["relu", "plateaus", "noise", "binary"].index(kind))
    for _ in range(3):
        raw = rng.standard_normal((6, 6))
        m = {"relu": lambda: normalize_scoremap(resize_scoremap(np.maximum(raw, 0), 40, dtype=np.float64)),
             "plateaus": lambda: normalize_scoremap(resize_scoremap(np.round(raw * 2) / 2, 40, dtype=np.float64)),
             "noise": lambda: rng.random((40, 40)),
             "binary": lambda: (rng.random((40, 40)) > 0.5) * 1.0}[kind]()
        x0, y0 = rng.integers(0, 30, 2)
        _assert_same_as_reference(m, np.array([[x0, y0, x0 + rng.integers(0, 10), y0 + rng.integers(0, 10)]]))
