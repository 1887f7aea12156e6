"""Faithfulness metrics: RISE deletion/insertion, Grad-CAM++ Average Drop/Increase, ROAD via grad-cam."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nc_viz.core.errors import NcVizError, UsageError
from nc_viz.metrics.specs import METRICS
from nc_viz.metrics.faithfulness import (
    FAITHFULNESS,
    FaithfulnessOptions,
    average_drop_increase,
    blur,
    causal_curves,
    deletion_insertion,
    forward_images,
    parse_faithfulness,
    pixel_ranks,
    rise_auc,
    rise_blur_kernel,
    score_faithfulness,
    step_counts,
)

EPS = 1e-12


class RegionModel(nn.Module):
    """Two classes; with f = mean |x| over `region` (clamped to [0, 1]), the softmax probability of
    class 0 is f and of class 1 is 1 - f (up to EPS): only the region matters, and how much."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())
        self.calls = 0
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += x.shape[0]
        f = (x.abs() * self.region).sum(dim=(1, 2, 3)) / (x.shape[1] * self.region.sum())
        f = f.clamp(0, 1).double()
        return torch.stack([torch.log(f + EPS), torch.log(1 - f + EPS)], dim=1)


def _quadrant(size: int) -> torch.Tensor:
    region = torch.zeros(size, size)
    region[: size // 2, : size // 2] = 1
    return region


# ----------------------------------------------------------------------------- RISE pieces


def test_rise_auc_of_hand_made_curves():
    curves = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 0.0], [0.2, 0.2, 0.2]])
    assert torch.allclose(rise_auc(curves), torch.tensor([0.5, 0.75, 0.2]))
    assert float(rise_auc(torch.tensor([1.0, 1.0, 0.0, 0.0]))) == pytest.approx((2 - 0.5) / 3)


def test_step_schedule_covers_every_pixel_once():
    rise = step_counts(224 * 224, None, 224)
    assert rise.numel() == 225 and int(rise[-1]) == 224 * 224           # RISE: 224 steps at S = 224
    assert step_counts(50, None, 8).tolist() == [0, 8, 16, 24, 32, 40, 48, 50]  # last step partial
    for steps in (1, 7, 32, 50):
        counts = step_counts(50, steps)
        assert counts.numel() == steps + 1 and int(counts[0]) == 0 and int(counts[-1]) == 50
        sizes = counts.diff()
        assert int(sizes.min()) >= 1 and int(sizes.max() - sizes.min()) <= 1
    with pytest.raises(ValueError, match="steps"):
        step_counts(50, 51)


def test_pixel_ranks_descending_with_stable_ties():
    m = torch.tensor([[[0.5, 1.0], [0.5, 0.0]]])
    assert pixel_ranks(m).tolist() == [[1, 0, 2, 3]]       # ties: earlier pixel (row-major) first


def test_blur_kernel_is_rise_gkern():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1.0
    expected = scipy_ndimage.gaussian_filter(impulse, 5)
    assert np.allclose(rise_blur_kernel(11, 5).numpy(), expected, atol=1e-7)
    x = torch.randn(1, 3, 16, 16)
    kern = torch.zeros(3, 3, 11, 11)
    for c in range(3):
        kern[c, c] = torch.from_numpy(expected).float()
    assert torch.allclose(blur(x), torch.nn.functional.conv2d(x, kern, padding=5), atol=1e-6)


# ----------------------------------------------------------------------------- deletion / insertion


def test_deletion_curve_and_auc_known_exactly():
    s = 8
    model = RegionModel(torch.ones(s, s))
    x = torch.ones(1, 3, s, s)
    maps = torch.rand(1, s, s)
    out = deletion_insertion(model, x, maps, [0], modes=("deletion",))
    expected = 1 - torch.arange(9, dtype=torch.float32) / 8                  # 8 px per step at S = 8
    assert out["deletion_curve"].shape == (1, 9) and int(out["steps"]) == 8
    assert torch.allclose(out["deletion_curve"][0], expected, atol=1e-6)
    assert float(out["deletion_auc"][0]) == pytest.approx(0.5, abs=1e-6)
    coarse = deletion_insertion(model, x, maps, [0], steps=5, modes=("deletion",))
    remaining = 1 - torch.tensor([0, 12, 25, 38, 51, 64]) / 64
    assert coarse["deletion_curve"].shape == (1, 6) and int(coarse["steps"]) == 5
    assert torch.allclose(coarse["deletion_curve"][0], remaining.float(), atol=1e-6)
    assert float(coarse["deletion_auc"][0]) == pytest.approx(float(rise_auc(remaining)), abs=1e-6)


def _maps(region: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    true = (region + 0.01 * torch.rand(n, *region.shape))
    return {"true": true, "random": torch.rand(n, *region.shape), "inverted": -true}


def test_true_relevance_deletes_faster_and_inserts_faster():
    s = 12
    region = _quadrant(s)
    model = RegionModel(region)
    checker = ((torch.arange(s).view(-1, 1) + torch.arange(s)) % 2 * 2 - 1).float()   # blurs to ~0
    x = (checker * region).expand(2, 3, s, s).clone()
    aucs = {name: deletion_insertion(model, x, m, [0, 0]) for name, m in _maps(region, 2).items()}
    for other in ("random", "inverted"):
        assert (aucs["true"]["deletion_auc"] < aucs[other]["deletion_auc"]).all()
        assert (aucs["true"]["insertion_auc"] > aucs[other]["insertion_auc"]).all()
    assert float(aucs["true"]["deletion_auc"][0]) < 0.2 and float(aucs["inverted"]["deletion_auc"][0]) > 0.7


def test_batched_equals_one_image_at_a_time(tiny_net):
    torch.manual_seed(2)
    x, maps, target = torch.randn(3, 3, 16, 16), torch.rand(3, 4, 4), torch.tensor([0, 2, 3])
    together = deletion_insertion(tiny_net, x, maps, target, steps=10, batch_size=12)
    grouped = deletion_insertion(tiny_net, x, maps, target, steps=10, batch_size=2)   # fewer slots than images
    assert torch.allclose(together["deletion_curve"], grouped["deletion_curve"], atol=1e-6)
    for i in range(3):
        alone = deletion_insertion(tiny_net, x[i:i + 1], maps[i:i + 1], target[i:i + 1], steps=10, batch_size=1)
        for key in ("deletion_curve", "insertion_curve", "deletion_auc", "insertion_auc"):
            assert torch.allclose(together[key][i], alone[key][0], atol=1e-6), key


def test_cost_is_n_plus_one_forward_images_per_image_in_large_passes():
    s = 16
    model = RegionModel(torch.ones(s, s))
    out = deletion_insertion(model, torch.ones(4, 3, s, s), torch.rand(4, s, s), [0] * 4, batch_size=32)
    assert model.images == 2 * 4 * (s + 1) == 4 * forward_images(s * s, None, s)
    assert model.calls == 2 * 3                       # 4 images x 8 steps per pass, 17 points -> 3 passes
    assert out["insertion_curve"].shape == (4, s + 1)


def test_curves_reject_bad_inputs():
    model = RegionModel(torch.ones(4, 4))
    with pytest.raises(ValueError, match="targets"):
        causal_curves(model, torch.ones(2, 3, 4, 4), torch.rand(2, 4, 4), [0])
    with pytest.raises(ValueError, match="NaN"):
        causal_curves(model, torch.ones(1, 3, 4, 4), torch.full((1, 4, 4), float("nan")), [0])
    with pytest.raises(ValueError, match="target classes"):
        causal_curves(model, torch.ones(1, 3, 4, 4), torch.rand(1, 4, 4), [2])
    with pytest.raises(ValueError, match="mode"):
        causal_curves(model, torch.ones(1, 3, 4, 4), torch.rand(1, 4, 4), [0], mode="both")


# ----------------------------------------------------------------------------- Average Drop / Increase


def _drop_case() -> tuple[RegionModel, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x = 0.8 everywhere, map = 1 on the left half, 0 on the right: the explanation image halves f.
    Image 0 explains class 0: Y = 0.8, O = 0.4, drop 0.5. Image 1 explains class 1: Y = 0.2,
    O = 0.6, drop 0, increase."""
    s = 8
    model = RegionModel(torch.ones(s, s))
    x = torch.full((2, 3, s, s), 0.8)
    maps = torch.zeros(2, s, s)
    maps[:, :, : s // 2] = 3.0                       # min-max normalised to exactly 1 / 0
    return model, x, maps, torch.tensor([0, 1])


def test_average_drop_and_increase_by_hand():
    model, x, maps, target = _drop_case()
    out = average_drop_increase(model, x, maps, target)
    assert torch.allclose(out["y"], torch.tensor([0.8, 0.2]), atol=1e-6)
    assert torch.allclose(out["o"], torch.tensor([0.4, 0.6]), atol=1e-6)
    assert torch.allclose(out["drop"], torch.tensor([0.5, 0.0]), atol=1e-6)
    assert out["increase"].tolist() == [False, True]
    assert 100 * float(out["drop"].mean()) == pytest.approx(25.0, abs=1e-4)        # Average Drop
    assert 100 * float(out["increase"].float().mean()) == pytest.approx(50.0)     # Increase in Confidence


def test_grad_cams_drop_in_confidence_is_not_divided_by_y():
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, maps, target = _drop_case()
    ours = average_drop_increase(model, x, maps, target)
    theirs = DropInConfidence()(x, (maps / 3).numpy(), [ClassifierOutputSoftmaxTarget(int(t)) for t in target], model)
    assert np.allclose(theirs, (ours["drop"] * ours["y"]).numpy(), atol=1e-6)     # 0.4 = 0.5 x 0.8


# ----------------------------------------------------------------------------- ROAD


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_road_is_grad_cams_numbers(tiny_net):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.road import (ROADCombined, ROADLeastRelevantFirstAverage,
                                                ROADMostRelevantFirstAverage)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from nc_viz.metrics.road import road_scores

    torch.manual_seed(3)
    x, maps, target = torch.randn(2, 3, 16, 16), torch.rand(2, 16, 16), torch.tensor([1, 2])
    ours = road_scores(tiny_net, x, maps, target, seed=5)
    assert {k: v.shape for k, v in ours.items()} == {k: (2,) for k in ("road_morf", "road_lerf", "road_combined")}
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    cams = ((maps - maps.amin((1, 2), keepdim=True)) / (maps.amax((1, 2), keepdim=True)
                                                         - maps.amin((1, 2), keepdim=True))).numpy()
    torch.manual_seed(5)
    combined = ROADCombined(percentiles=list(range(10, 100, 10)))(x, cams, targets, tiny_net)
    assert np.allclose(ours["road_combined"].numpy(), combined, atol=1e-6)
    torch.manual_seed(5)                                        # ROADCombined draws LeRF's noise first
    lerf = ROADLeastRelevantFirstAverage()(x, cams, targets, tiny_net)
    morf = ROADMostRelevantFirstAverage()(x, cams, targets, tiny_net)
    assert np.allclose(ours["road_lerf"].numpy(), lerf, atol=1e-6)
    assert np.allclose(ours["road_morf"].numpy(), morf, atol=1e-6)
    state = torch.get_rng_state()
    road_scores(tiny_net, x, maps, target, seed=5)
    assert torch.equal(state, torch.get_rng_state())            # the caller's random state is untouched


def test_road_without_grad_cam_is_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_grad_cam(name, *args, **kwargs):
        if name.startswith("pytorch_grad_cam"):
            raise ImportError("No module named 'pytorch_grad_cam'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_grad_cam)
    from nc_viz.metrics.road import require_grad_cam

    with pytest.raises(NcVizError, match=r"^faithfulness road needs the grad-cam package"):
        require_grad_cam()


# ----------------------------------------------------------------------------- registry


def test_parse_faithfulness():
    assert parse_faithfulness("drop, deletion") == ["deletion", "drop"]
    assert parse_faithfulness("all") == ["deletion", "insertion", "drop", "road"]
    assert parse_faithfulness(None) == [] and parse_faithfulness("") == []
    with pytest.raises(UsageError, match=r"^faithfulness bogus: choose from deletion, insertion, drop, road or all"):
        parse_faithfulness("deletion,bogus")


def test_registry_columns_and_directions(tiny_net):
    columns = [c for metric in FAITHFULNESS.values() for c in metric.columns]
    assert columns == ["deletion_auc", "insertion_auc", "avg_drop", "increase", "road_morf", "road_lerf",
                       "road_combined"]
    better = {c: METRICS[c].better for c in columns}
    assert better == {"deletion_auc": "lower", "insertion_auc": "higher", "avg_drop": "lower", "increase": "higher",
                      "road_morf": "lower", "road_lerf": "higher", "road_combined": "higher"}
    assert {c for c in columns if METRICS[c].percent} == {"avg_drop", "increase"}   # 100 x the mean
    torch.manual_seed(4)
    x, maps = torch.randn(2, 3, 16, 16), torch.rand(2, 4, 4)
    out = score_faithfulness(tiny_net, x, maps, torch.tensor([0, 1]), ["deletion", "insertion", "drop"],
                             FaithfulnessOptions(steps=8))
    for name in ("deletion", "insertion", "drop"):
        for column in FAITHFULNESS[name].columns:
            assert out[column].shape == (2,) and out[column].dtype == torch.float32
    assert out["deletion_curve"].shape == (2, 9) and out["insertion_curve"].shape == (2, 9)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tiny_net):
    torch.manual_seed(6)
    x, maps, target = torch.randn(2, 3, 16, 16), torch.rand(2, 16, 16), torch.tensor([0, 3])
    cpu = deletion_insertion(tiny_net, x, maps, target)
    gpu = deletion_insertion(tiny_net.cuda(), x.cuda(), maps.cuda(), target.cuda())
    for key in ("deletion_curve", "insertion_curve"):
        assert torch.allclose(cpu[key], gpu[key].cpu(), atol=1e-4)
    half = deletion_insertion(tiny_net, x.cuda(), maps.cuda(), target.cuda(), autocast=torch.float16)
    assert torch.allclose(cpu["deletion_curve"], half["deletion_curve"].cpu(), atol=2e-2)
