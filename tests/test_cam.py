"""The CAM engine: the exact decomposition of the logit into CAM and neuron maps
(Zhou et al., CVPR 2016; README "The maths, briefly") and the neuron ranking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nc_viz.cams.compute import compute_cams, display_heatmaps, normalise_maps, upsample_maps
from nc_viz.core.errors import UsageError


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture
def batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 16, 16)


def test_contributions_plus_bias_equal_the_logit(tiny_net, batch):
    out = compute_cams(tiny_net, batch)
    logit = out.logits.gather(1, out.target[:, None])[:, 0]
    bias = tiny_net.fc.bias[out.target]
    torch.testing.assert_close(out.contributions.sum(1) + bias, logit, atol=1e-5, rtol=1e-5)


def test_cam_is_the_weighted_feature_sum_and_its_mean_is_the_logit_minus_bias(tiny_net, batch):
    feats = tiny_net.layer4(tiny_net.conv1(batch))
    out = compute_cams(tiny_net, batch)
    w = tiny_net.fc.weight[out.target]
    expected = (w[:, :, None, None] * feats).sum(1)
    torch.testing.assert_close(out.cam, expected, atol=1e-5, rtol=1e-5)
    logit = out.logits.gather(1, out.target[:, None])[:, 0]
    torch.testing.assert_close(out.cam.mean((1, 2)) + tiny_net.fc.bias[out.target], logit, atol=1e-5, rtol=1e-5)


def test_all_neuron_maps_sum_to_the_cam(tiny_net, batch):
    channels = tiny_net.fc.in_features
    out = compute_cams(tiny_net, batch, top_k=channels)
    torch.testing.assert_close(out.neuron_maps.sum(1), out.cam, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rank_by", ["contribution", "activation"])
def test_top_neurons_match_a_ranking_by_hand(tiny_net, batch, rank_by):
    out = compute_cams(tiny_net, batch, top_k=3, rank_by=rank_by)
    feats = tiny_net.layer4(tiny_net.conv1(batch))
    for i in range(batch.shape[0]):
        mean_f = feats[i].mean((1, 2))
        score = tiny_net.fc.weight[out.target[i]] * mean_f if rank_by == "contribution" else mean_f
        by_hand = sorted(range(len(score)), key=lambda k: -float(score[k]))[:3]
        assert out.neuron_ids[i].tolist() == by_hand
        k = by_hand[0]
        torch.testing.assert_close(out.neuron_maps[i, 0], tiny_net.fc.weight[out.target[i], k] * feats[i, k])


def test_target_defaults_to_the_prediction_and_can_be_fixed(tiny_net, batch):
    feats = tiny_net.layer4(tiny_net.conv1(batch))
    weights = tiny_net.fc.weight

    def by_hand(classes: list[int]) -> torch.Tensor:   # each image's map: sum_k w_k^c f_k of its class c
        return torch.stack([(weights[c][:, None, None] * f).sum(0) for c, f in zip(classes, feats)])

    out = compute_cams(tiny_net, batch)
    predicted = out.logits.argmax(1).tolist()
    assert out.target.tolist() == predicted
    torch.testing.assert_close(out.cam, by_hand(predicted), atol=1e-5, rtol=1e-5)
    fixed = compute_cams(tiny_net, batch, target=2)
    assert fixed.target.tolist() == [2, 2, 2]
    torch.testing.assert_close(fixed.cam, by_hand([2, 2, 2]), atol=1e-5, rtol=1e-5)
    others = [c for c in range(4) if c != 2]
    per_image = compute_cams(tiny_net, batch, target=torch.tensor(others))
    assert per_image.target.tolist() == others
    torch.testing.assert_close(per_image.cam, by_hand(others), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fixed.cam, per_image.cam)                  # the class chosen changes the map
    with pytest.raises(UsageError, match="out of range"):
        compute_cams(tiny_net, batch, target=9)


def test_top_k_beyond_the_channel_count_is_a_usage_error(tiny_net, batch):
    with pytest.raises(UsageError, match="^top_k 7 is out of range"):
        compute_cams(tiny_net, batch, top_k=7)


def test_hook_is_removed_after_use(tiny_net, batch):
    compute_cams(tiny_net, batch)
    assert not tiny_net.avgpool._forward_pre_hooks


@pytest.mark.parametrize("arch", ["tiny", "resnet20_nc"])
def test_gradcam_agrees_with_relu_cam_up_to_scale(tiny_net, batch, arch):
    """On a GAP+FC head, Grad-CAM of the raw logit is ReLU(M_c) up to a positive scale.

    grad-cam is a test dependency: this fails, rather than skips, when it is missing.
    """
    import cv2  # installed with grad-cam (opencv)

    from nc_viz.models import build_model

    if arch == "tiny":
        model = tiny_net
    else:  # the NC wrapper is the target layer: layer3 = NCWrapper(NCBlock, stage)
        torch.manual_seed(4)
        model = build_model(arch, 5, input_size=16).eval()
    ours = compute_cams(model, batch)
    theirs = compute_cams(model, batch, method="gradcam", target=ours.target)
    assert theirs.target.tolist() == ours.target.tolist()
    size = batch.shape[-1]
    for i in range(batch.shape[0]):
        relu = torch.relu(ours.cam[i]).numpy()
        assert relu.max() > 0, "a map with no positive value would make the comparison empty"
        up = cv2.resize(relu, (size, size))  # grad-cam's own resize
        up = (up - up.min()) / (up.max() - up.min() + 1e-7)
        np.testing.assert_allclose(theirs.cam[i].numpy(), up, atol=1e-3)


def test_shared_scale_puts_both_models_on_one_range():
    a = torch.zeros(1, 2, 2)
    b = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])
    a[0, 0, 0] = 2.0
    pa, pb = display_heatmaps(a, b, 2, "panel")
    assert float(pa.max()) == 1.0 and float(pb.max()) == 1.0
    sa, sb = display_heatmaps(a, b, 2, "shared")
    assert float(sa.max()) == pytest.approx(0.5) and float(sb.max()) == 1.0


def test_normalise_flat_map_gives_zeros_and_upsample_keeps_constants():
    assert normalise_maps(torch.ones(1, 3, 3)).abs().sum() == 0
    up = upsample_maps(torch.full((2, 4, 4), 3.0), 16)
    assert up.shape == (2, 16, 16) and torch.allclose(up, torch.full_like(up, 3.0))
