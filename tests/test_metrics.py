"""Diversity and localisation metrics (nc_viz/metrics): hand-computed cases, edge cases, batching."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nc_viz.metrics import (
    mean_pairwise_correlation,
    mean_pairwise_iou,
    neuron_map_diversity,
    published_corr,
    summarise,
    upsample_map,
)
from oracles import energy_in_masks, instance_coverage, pointing_game   # the torch references of evaluate's kernels

A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------------- correlation

def test_correlation_identical_maps_is_one() -> None:
    maps = torch.stack([A, A, A])
    assert mean_pairwise_correlation(maps).item() == pytest.approx(1.0, abs=1e-6)


def test_correlation_of_negation_is_minus_one() -> None:
    assert mean_pairwise_correlation(torch.stack([A, -A])).item() == pytest.approx(-1.0, abs=1e-6)


def test_correlation_hand_computed_three_maps() -> None:
    # centred A = [-1.5, -.5, .5, 1.5]; C = [[1,2],[4,3]] -> [-1.5, -.5, 1.5, .5]
    # corr(A, C) = 4 / 5 = 0.8, corr(A, 5 - A) = -1, corr(5 - A, C) = -0.8 -> mean -1/3
    c = _t([[1, 2], [4, 3]])
    value = mean_pairwise_correlation(torch.stack([A, 5 - A, c]))
    assert value.shape == ()
    assert value.item() == pytest.approx(-1.0 / 3.0, abs=1e-6)


def test_correlation_constant_map_is_zero_not_nan() -> None:
    const = torch.full((2, 2), 0.1)
    value = mean_pairwise_correlation(torch.stack([A, const, A]))
    assert value.item() == pytest.approx(1.0 / 3.0, abs=1e-6)   # pairs: 0, 1, 0
    all_const = torch.stack([torch.full((7, 7), v) for v in (0.1, 0.3, 0.0)])
    assert mean_pairwise_correlation(all_const).item() == 0.0


def test_correlation_single_map_is_nan() -> None:
    assert math.isnan(mean_pairwise_correlation(A[None]).item())


def test_correlation_matches_reference_on_random_maps() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 6, 7, generator=g, dtype=torch.float64)
    flat = maps.flatten(1)
    ref = torch.corrcoef(flat)
    i, j = torch.triu_indices(5, 5, 1)
    assert mean_pairwise_correlation(maps).item() == pytest.approx(ref[i, j].mean().item(), abs=1e-12)


# ----------------------------------------------------------------------------- IoU

def test_iou_identical_maps_is_one() -> None:
    g = torch.Generator().manual_seed(1)
    m = torch.rand(8, 8, generator=g)
    assert mean_pairwise_iou(torch.stack([m, m, m])).item() == pytest.approx(1.0)


def test_iou_disjoint_blobs_is_zero() -> None:
    a = torch.zeros(10, 10)
    b = torch.zeros(10, 10)
    a[:3, :3] = 1.0
    b[6:, 6:] = 1.0
    assert mean_pairwise_iou(torch.stack([a, b]), top_q=0.09).item() == 0.0


def test_iou_hand_computed_2x2() -> None:
    # top_q = 0.5 on 2x2 -> 2 positions each (row-major index):
    # A -> {3, 2}; D -> {0, 1}; E = [[1,4],[2,3]] -> {1, 3}
    # IoU(A, D) = 0, IoU(A, E) = 1/3, IoU(D, E) = 1/3 -> mean 2/9
    d = _t([[4, 3], [1, 2]])
    e = _t([[1, 4], [2, 3]])
    assert mean_pairwise_iou(torch.stack([A, e]), top_q=0.5).item() == pytest.approx(1 / 3)
    assert mean_pairwise_iou(torch.stack([A, d, e]), top_q=0.5).item() == pytest.approx(2 / 9)


def test_iou_ties_broken_by_position_and_region_at_least_one() -> None:
    const = torch.zeros(2, 2)                 # ties everywhere -> first positions {0, 1}
    d = _t([[4, 3], [1, 2]])                  # {0, 1}
    assert mean_pairwise_iou(torch.stack([const, d]), top_q=0.5).item() == 1.0
    # round(0.1 * 4) = 0 -> region of 1 position: const -> {0}, A -> {3}
    assert mean_pairwise_iou(torch.stack([const, A]), top_q=0.1).item() == 0.0
    assert mean_pairwise_iou(torch.stack([const, d]), top_q=0.1).item() == 1.0


def test_iou_single_map_is_nan_and_bad_q_raises() -> None:
    assert math.isnan(mean_pairwise_iou(A[None]).item())
    for q in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_q"):
            mean_pairwise_iou(torch.stack([A, A]), top_q=q)


def test_neuron_map_diversity_ignores_the_sign_of_the_weight() -> None:
    """Ranked by activation, a neuron with a negative weight has a negative map w_k f_k: its
    pattern (and so the diversity) is that of f_k."""
    torch.manual_seed(0)
    f = torch.rand(1, 4, 6, 6)                           # post-ReLU features
    w = torch.tensor([1.5, -2.0, 0.5, -0.1])[None, :, None, None]
    corr, iou = neuron_map_diversity(w * f)
    assert corr.item() == pytest.approx(mean_pairwise_correlation(f).item(), abs=1e-6)
    assert iou.item() == pytest.approx(mean_pairwise_iou(f).item(), abs=1e-6)
    assert mean_pairwise_correlation(w * f).item() != pytest.approx(corr.item(), abs=1e-3)


# ----------------------------------------------------------------------------- published Corr

def test_published_corr_two_channels_is_one() -> None:
    # after centring across channels, channel 1 = -channel 0 -> cos = -1;
    # |C| = [[1, 1], [1, 1]] -> mean 1.0
    g = torch.Generator().manual_seed(2)
    feats = torch.rand(2, 3, 4, generator=g)
    assert published_corr(feats).item() == pytest.approx(1.0, abs=1e-6)


def test_published_corr_hand_computed_three_channels() -> None:
    # (C=3, h=1, w=2): channels [1,0], [0,1], [0,0]; channel mean per position 1/3.
    # centred x3: [2,-1], [-1,2], [-1,-1]; cos01 = -4/5, cos02 = cos12 = -1/sqrt(10)
    feats = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]])
    expected = (3 + 2 * (0.8 + 2 / math.sqrt(10))) / 9
    assert published_corr(feats).item() == pytest.approx(expected, abs=1e-6)


def test_published_corr_zero_vectors_give_zero() -> None:
    base = torch.tensor([[0.1, 0.7], [0.3, 0.9]])
    same = base.expand(4, 2, 2).clone()        # identical channels -> all centred maps zero
    assert published_corr(same).item() == 0.0
    assert published_corr(base[None]).item() == 0.0   # C = 1


def test_published_corr_matches_reference_loop() -> None:
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(6, 3, 5, generator=g, dtype=torch.float64)
    v = (feats - feats.mean(0, keepdim=True)).flatten(1)
    ref = sum(
        abs(torch.dot(v[i], v[j]).item() / (v[i].norm() * v[j].norm()).item())
        for i in range(6) for j in range(6)
    ) / 36
    assert published_corr(feats).item() == pytest.approx(ref, abs=1e-12)


# ----------------------------------------------------------------------------- batching

@pytest.mark.parametrize(
    "fn", [mean_pairwise_correlation, mean_pairwise_iou, published_corr],
    ids=["corr", "iou", "published"],
)
def test_batched_equals_per_image(fn) -> None:
    g = torch.Generator().manual_seed(4)
    maps = torch.randn(3, 5, 7, 6, generator=g)
    maps[1, 2] = 0.25                           # one constant map in the batch
    batched = fn(maps)
    assert batched.shape == (3,)
    single = torch.stack([fn(m) for m in maps])
    torch.testing.assert_close(batched, single)
    assert not torch.isnan(batched).any()


def test_low_precision_input_is_computed_in_float32() -> None:
    maps = torch.stack([A, -A]).to(torch.bfloat16)
    value = mean_pairwise_correlation(maps)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("bad", [torch.zeros(4, 4), torch.zeros(1, 2, 3, 4, 5), torch.zeros(2, 0, 3)])
@pytest.mark.parametrize("fn", [mean_pairwise_correlation, mean_pairwise_iou, published_corr])
def test_diversity_bad_shapes_raise(fn, bad) -> None:
    with pytest.raises(ValueError, match="shape|empty"):
        fn(bad)


# ----------------------------------------------------------------------------- upsampling

def test_upsample_map_matches_interpolate_and_keeps_lead_dims() -> None:
    g = torch.Generator().manual_seed(5)
    cam = torch.randn(2, 3, 4, 4, generator=g)
    up = upsample_map(cam, (16, 12))
    assert up.shape == (2, 3, 16, 12)
    ref = F.interpolate(cam.reshape(6, 1, 4, 4), size=(16, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, ref.reshape(2, 3, 16, 12))
    assert torch.equal(upsample_map(cam[0, 0], (4, 4)), cam[0, 0])
    with pytest.raises(ValueError, match="size"):
        upsample_map(cam, (0, 4))
    with pytest.raises(ValueError, match="at least 2 dims"):
        upsample_map(torch.zeros(4), (4, 4))


# ----------------------------------------------------------------------------- localisation

def _left_half(size: int = 16) -> torch.Tensor:
    m = torch.zeros(1, size, size, dtype=torch.bool)
    m[:, :, : size // 2] = True
    return m


def test_energy_all_inside_is_one() -> None:
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    cam = torch.full((4, 4), -1.0)
    cam[1:3, 1:3] = 2.0
    assert energy_in_masks(cam, masks) == pytest.approx(1.0)


def test_energy_half_half() -> None:
    assert energy_in_masks(torch.ones(16, 16), _left_half()) == pytest.approx(0.5)
    assert energy_in_masks(torch.ones(4, 4), _left_half()) == pytest.approx(0.5)   # 4x4 cam


def test_energy_low_resolution_cam() -> None:
    # 4x4 cam: +1 in the left two columns, -1 in the right two. Bilinear (align_corners=False)
    # to 16x16 is positive exactly in columns 0..7 (col 7 -> +0.25, col 8 -> -0.25).
    cam = torch.ones(4, 4)
    cam[:, 2:] = -1.0
    assert energy_in_masks(cam, _left_half()) == pytest.approx(1.0)
    right = ~_left_half()
    assert energy_in_masks(cam, right) == 0.0


def test_energy_nonpositive_cam_and_no_masks_give_zero() -> None:
    assert energy_in_masks(-torch.ones(4, 4), _left_half()) == 0.0
    assert energy_in_masks(torch.zeros(4, 4), _left_half()) == 0.0
    assert energy_in_masks(torch.ones(4, 4), torch.zeros(0, 16, 16, dtype=torch.bool)) == 0.0


def test_energy_union_of_overlapping_instances_counts_once() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :, :2] = True
    masks[1, :, :2] = True          # same region twice
    assert energy_in_masks(torch.ones(4, 4), masks) == pytest.approx(0.5)
    assert energy_in_masks(torch.ones(4, 4), masks[0]) == pytest.approx(0.5)   # (H, W) mask


def test_pointing_game_true_and_false() -> None:
    cam = torch.zeros(4, 4)
    cam[0, 0] = 5.0
    inside = torch.zeros(1, 4, 4, dtype=torch.bool)
    inside[0, 0, 0] = True
    assert pointing_game(cam, inside) is True
    assert pointing_game(cam, ~inside) is False
    assert pointing_game(cam, torch.zeros(0, 4, 4, dtype=torch.bool)) is False


def test_pointing_game_low_resolution_cam() -> None:
    cam = torch.zeros(4, 4)
    cam[3, 3] = 1.0                             # peak in the bottom-right cell
    bottom_right = torch.zeros(2, 16, 16, dtype=torch.bool)
    bottom_right[1, 12:, 12:] = True            # second instance holds it
    top_left = torch.zeros(1, 16, 16, dtype=torch.bool)
    top_left[0, :4, :4] = True
    assert pointing_game(cam, bottom_right) is True
    assert pointing_game(cam, top_left) is False


def test_instance_coverage_one_of_two_lit() -> None:
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 10:14, 10:14] = True
    cam = torch.zeros(16, 16)
    cam[2:6, 2:6] = 1.0
    assert instance_coverage(cam, masks) == pytest.approx(0.5)
    cam[10:14, 10:14] = 0.6
    assert instance_coverage(cam, masks) == pytest.approx(1.0)
    assert instance_coverage(cam, masks, fraction=0.7) == pytest.approx(0.5)


def test_instance_coverage_low_resolution_cam() -> None:
    cam = torch.zeros(4, 4)
    cam[0, 0] = 1.0
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 12:, 12:] = True
    assert instance_coverage(cam, masks) == pytest.approx(0.5)


def test_instance_coverage_edge_cases() -> None:
    masks = _left_half()
    assert instance_coverage(-torch.ones(4, 4), masks) == 0.0
    assert math.isnan(instance_coverage(torch.ones(4, 4), torch.zeros(0, 16, 16, dtype=torch.bool)))
    empty_instance = torch.cat([masks, torch.zeros(1, 16, 16, dtype=torch.bool)])
    assert instance_coverage(torch.ones(4, 4), empty_instance) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="fraction"):
        instance_coverage(torch.ones(4, 4), masks, fraction=1.5)


@pytest.mark.parametrize("fn", [energy_in_masks, pointing_game, instance_coverage])
def test_localisation_bad_shapes_raise(fn) -> None:
    with pytest.raises(ValueError, match="cam must have shape"):
        fn(torch.ones(1, 4, 4), _left_half())
    with pytest.raises(ValueError, match="masks must have shape"):
        fn(torch.ones(4, 4), torch.ones(1, 1, 16, 16, dtype=torch.bool))


# ----------------------------------------------------------------------------- summary

def test_summarise_ignores_nan() -> None:
    assert summarise([1.0, float("nan"), 3.0]) == {"mean": 2.0, "n": 2}
    assert summarise([True, False, True, True]) == {"mean": 0.75, "n": 4}
    empty = summarise([float("nan")])
    assert math.isnan(empty["mean"]) and empty["n"] == 0
    assert summarise([torch.tensor(0.5), 1.5])["mean"] == pytest.approx(1.0)
