"""The numbers a paper prints, on maps built so that every outcome is worked out by hand:
GT-known / Top-1 Loc at tau = 0.2 from the largest contour, MaxBoxAcc (largest contour) against
MaxBoxAccV2 (all contours), the significance mark of a paired interval, RISE's insertion."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nc_viz.tasks.evaluate import EvalOptions
from nc_viz.tasks.evaluate.decode import EvalItem
from nc_viz.tasks.evaluate.score import ModelTally, measure_image, score_image
from nc_viz.metrics.bootstrap import paired_bootstrap_mean
from nc_viz.metrics.wsol import THRESHOLDS, BoxAccumulator, box_correctness

S = 64


def _map(*rects: tuple[int, int, int, int, float]) -> np.ndarray:
    """A float64 (S, S) map: zero but for the (x0, y0, x1, y1, value) rectangles (inclusive ends)."""
    m = np.zeros((S, S))
    for x0, y0, x1, y1, value in rects:
        m[y0:y1 + 1, x0:x1 + 1] = value
    return m


# Two blobs: a large one (30 x 40 px) away from the object and a small one (20 x 10) on it.
# Every threshold keeps both (the map is 0 or 1). The largest contour's box [0, 0, 30, 40] misses
# the ground truth (IoU 0); the small blob's box [40, 50, 60, 60] is the ground truth (IoU 1).
TWO_BLOBS = _map((0, 0, 29, 39, 1.0), (40, 50, 59, 59, 1.0))
TWO_BLOBS_GT = np.array([[40, 50, 60, 60]])

# A halo: 0.1 over a 48 x 48 square, 1 on the object inside it. As uint8 the halo is
# int(0.1 * 255) = 25: a threshold int(tau * 255) below 25 keeps the halo (box [0, 0, 48, 48],
# IoU 17 * 17 / (49 * 49) = 0.12 with the object's box), from 25 on only the object (IoU 1).
HALO = _map((0, 0, 47, 47, 0.1), (8, 8, 23, 23, 1.0))
HALO_GT = np.array([[8, 8, 24, 24]])
FIRST_TAU_WITHOUT_HALO = min(i for i in range(1000) if int(i / 1000 * 255) >= 25)   # the reference's int(tau * max)


def test_first_tau_without_the_halo_is_before_0_2():
    assert FIRST_TAU_WITHOUT_HALO == 99 and THRESHOLDS[200] == pytest.approx(0.2)


def test_halo_outcome_per_threshold():
    outcome = box_correctness(HALO, HALO_GT)
    assert not outcome.v1[:FIRST_TAU_WITHOUT_HALO].any() and outcome.v1[FIRST_TAU_WITHOUT_HALO:].all()
    assert outcome.best_iou_v1[20] == pytest.approx(17 * 17 / (49 * 49)) and outcome.best_iou_v1[200] == 1


@pytest.mark.parametrize("correct", [True, False])
def test_gt_known_and_top1_loc_of_one_image_are_read_at_tau_0_2(correct):
    """At tau = 0.2 the halo is gone: the box is right. (At tau = 0.02 it would be wrong.)"""
    item = EvalItem(0, boxes=HALO_GT)
    numbers = measure_image(torch.from_numpy(HALO), item, correct, S, EvalOptions()).numbers
    assert numbers["iou_tau_0.2"] == pytest.approx(1.0)
    assert numbers["gt_known_loc"] == 1.0
    assert numbers["top1_loc"] == (1.0 if correct else 0.0)     # Top-1 also needs the class right


@pytest.mark.parametrize("correct", [True, False])
def test_gt_known_and_top1_loc_of_one_image_come_from_the_largest_contour(correct):
    item = EvalItem(0, boxes=TWO_BLOBS_GT)
    tally = ModelTally()
    numbers = score_image(torch.from_numpy(TWO_BLOBS), item, correct, S, EvalOptions(), tally)
    assert numbers["iou_tau_0.2"] == 0.0 and numbers["gt_known_loc"] == 0.0 and numbers["top1_loc"] == 0.0
    result = tally.boxes.result()
    assert result["max_box_acc"] == 0.0 and result["gt_known_loc"] == 0.0 and result["top1_loc"] == 0.0
    assert result["max_box_acc_v2"] == 100.0          # all contours: the small blob's box counts


def test_box_accumulator_result_of_images_where_v1_and_v2_and_the_deltas_differ():
    """Three images: the two blobs (V2 right, V1 wrong, at every tau), the halo (right from tau
    index 99 on, at every delta), and a box of IoU 0.6 (right at deltas 0.3 and 0.5 only)."""
    # 20 x 30 px region against a ground truth 20 x 50: IoU (21 * 31) / (21 * 51) = 31/51 = 0.608
    partial = _map((10, 10, 29, 39, 1.0))
    partial_gt = np.array([[10, 10, 30, 60]])
    acc = BoxAccumulator()
    acc.add(box_correctness(TWO_BLOBS, TWO_BLOBS_GT), top1_correct=True)
    acc.add(box_correctness(HALO, HALO_GT), top1_correct=False)
    acc.add(box_correctness(partial, partial_gt), top1_correct=True)
    r = acc.result()
    # V1 (largest contour, IoU >= 0.5): blobs never, halo from tau index 99, partial always
    assert r["curves"]["v1"][0] == pytest.approx(100 / 3) and r["curves"]["v1"][99] == pytest.approx(200 / 3)
    assert r["max_box_acc"] == pytest.approx(200 / 3) and r["best_tau_v1"] == pytest.approx(0.099)
    assert r["gt_known_loc"] == pytest.approx(200 / 3)                  # at tau 0.2: halo and partial
    assert r["top1_loc"] == pytest.approx(100 / 3)                      # the halo image's class is wrong
    # V2 (all contours): delta 0.3 and 0.5: all three (halo from index 99); delta 0.7: blobs and halo
    assert r["box_acc_v2_by_delta"] == pytest.approx({"0.3": 100.0, "0.5": 100.0, "0.7": 200 / 3})
    assert r["best_tau_by_delta"]["0.5"] == pytest.approx(0.099)
    assert r["max_box_acc_v2"] == pytest.approx((100 + 100 + 200 / 3) / 3)
    assert r["count"] == 3


def test_a_significantly_worse_nc_model_is_marked_as_significant():
    """Every resample of NC minus baseline is -1 (or +1): the interval is [-1, -1] ([1, 1]), which
    excludes zero, whichever side it lies on."""
    worse = paired_bootstrap_mean(np.ones(6), np.zeros(6), n=50, seed=0)
    assert (worse.diff, worse.low, worse.high) == (-1.0, -1.0, -1.0) and worse.excludes_zero
    better = paired_bootstrap_mean(np.zeros(6), np.ones(6), n=50, seed=0)
    assert (better.low, better.high) == (1.0, 1.0) and better.excludes_zero
    mixed = paired_bootstrap_mean(np.zeros(6), np.array([1.0, -1, 1, -1, 1, -1]), n=200, seed=0)
    assert mixed.low < 0 < mixed.high and not mixed.excludes_zero


# ----------------------------------------------------------------------------- RISE insertion


class MeanModel(nn.Module):
    """Two classes; the probability of class 0 is the mean of the input (which lies in [0, 1])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.double().mean(dim=(1, 2, 3)).clamp(1e-9, 1 - 1e-9)
        return torch.stack([torch.log(f), torch.log(1 - f)], dim=1)


def test_insertion_starts_from_the_blurred_image_by_hand():
    """RISE's insertion: from the blurred image (its `gkern(11, 5)`: scipy's gaussian_filter of
    an impulse, zero padding) back to the original, S pixels per step, best-ranked first. On an
    all-ones image the blurred pixel is the kernel mass that falls inside the image."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from nc_viz.metrics.faithfulness import deletion_insertion

    s = 8
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1.0
    kernel = ndimage.gaussian_filter(impulse, 5)
    padded = np.pad(np.ones((s, s)), 5)                              # zeros around the image
    blurred = np.array([[(padded[i:i + 11, j:j + 11] * kernel).sum() for j in range(s)] for i in range(s)])
    assert 0.2 < blurred.min() < blurred.max() < 0.7                  # far from zero: it matters where we start
    maps = torch.from_numpy(np.random.default_rng(0).permutation(s * s).reshape(1, s, s).astype(np.float32))
    order = np.argsort(-maps[0].numpy().ravel())                      # distinct values: no ties
    expected = []
    for step in range(s + 1):                                        # s pixels per step at s x s
        current = blurred.ravel().copy()
        current[order[:step * s]] = 1.0
        expected.append(current.mean())
    out = deletion_insertion(MeanModel(), torch.ones(1, 3, s, s), maps, [0], modes=("insertion",))
    assert out["insertion_curve"][0].double().numpy() == pytest.approx(np.array(expected), abs=1e-6)
    auc = (sum(expected) - expected[0] / 2 - expected[-1] / 2) / s
    assert float(out["insertion_auc"][0]) == pytest.approx(auc, abs=1e-6)
    assert not math.isclose(expected[0], 0.0, abs_tol=0.1)
