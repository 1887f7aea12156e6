"""Every architecture family: CAM is exact where its spec says so, its `_nc` variant builds, runs,
round-trips through the checkpoint formats and is recognised from its keys without --arch; and
the CAM contract refuses a model whose head hides a layer, while gradient methods still draw it."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from nc_viz.cams.compute import compute_cams
from nc_viz.models.checkpoints import ModelMeta, load_checkpoint, save_checkpoint
from nc_viz.models.preprocessing import Preprocess
from nc_viz.core.errors import UsageError
from nc_viz.models import (
    Head,
    NCWrapper,
    build_model,
    check_cam_contract,
    classifier_of,
    count_parameters,
    features_hook,
    get_arch,
    head_of,
    list_archs,
    list_families,
    set_head,
)

SMALL_PARAMETERS = 30_000_000  # families whose smallest model is bigger round-trip under the slow mark


@functools.lru_cache(maxsize=None)
def _parameters(name: str) -> int:
    """Parameters of `name` with 5 classes (counted on the meta device, once per session)."""
    with torch.device("meta"):
        return count_parameters(build_model(name, 5))


def _smallest(family: str) -> str:
    """The family's plain architecture with the fewest parameters."""
    return min((n for n in list_archs(family) if not get_arch(n).nc), key=_parameters)


def _size(name: str) -> int:
    return min(get_arch(name).default_input_size, 64)


def _calibrated(model: nn.Module, size: int) -> nn.Module:
    """`model` in eval mode with BatchNorm statistics from two random batches. Freshly initialised
    EfficientNets and MobileNetV2s give logits of 1e-13 .. 1e-9 with the initial running statistics,
    which would pass every comparison below trivially; calibrated, they are of order 1."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, size, size))
    return model.eval()


def _cases(slow_if_big: bool) -> list:
    cases = []
    for family in list_families():
        if not list_archs(family):  # resolved by name only (timm:NAME): tests/test_timm.py
            continue
        name = _smallest(family)
        big = _parameters(name) > SMALL_PARAMETERS
        marks = [pytest.mark.slow] if slow_if_big and big else []
        cases.append(pytest.param(name, id=family, marks=marks))
    return cases


@pytest.fixture(scope="module", params=_cases(slow_if_big=False))
def pair(request) -> tuple[str, nn.Module, nn.Module]:
    """(plain arch, plain model, its _nc variant), 5 classes, built for <= 64 px, eval mode."""
    torch.manual_seed(0)
    name, size = request.param, _size(request.param)
    return (name, _calibrated(build_model(name, 5, input_size=size), size),
            _calibrated(build_model(f"{name}_nc", 5, input_size=size), size))


def test_cam_is_the_weighted_sum_of_the_pooled_features(pair) -> None:
    name, plain, nc = pair
    x = torch.randn(2, 3, _size(name), _size(name))
    for model in (plain, nc):
        assert get_arch(name).cam_exact and check_cam_contract(model, _size(name)).exact
        with features_hook(model) as hook:
            out = compute_cams(model, x, top_k=3)
        f, fc = hook.features.float(), classifier_of(model)
        assert out.logits.abs().max() > 1e-2  # not a vacuous comparison
        w = fc.weight[out.target]
        by_hand = torch.einsum("nc,nchw->nhw", w, f)
        torch.testing.assert_close(out.cam, by_hand, rtol=1e-4, atol=1e-5)
        logit = out.logits.gather(1, out.target[:, None])[:, 0]
        torch.testing.assert_close(out.contributions.sum(1) + fc.bias[out.target], logit, rtol=1e-4, atol=1e-4)
        assert out.neuron_maps.shape[:2] == (2, 3)


def test_nc_variant_has_a_block_at_each_stage(pair) -> None:
    name, _, nc = pair
    wrapped = [n for n, m in nc.named_modules() if isinstance(m, NCWrapper)]
    assert wrapped == list(get_arch(f"{name}_nc").stages)


@pytest.mark.parametrize("name", _cases(slow_if_big=True))
def test_nc_variant_round_trips_and_is_recognised_without_arch(name: str, tmp_path) -> None:
    torch.manual_seed(1)
    size = _size(name)
    model = _calibrated(build_model(f"{name}_nc", 5, input_size=size), size)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    meta = ModelMeta(arch=f"{name}_nc", num_classes=5, preprocess=Preprocess(size), reduction=8, placement="stages")
    own = load_checkpoint(save_checkpoint(tmp_path / "own.pth", model, meta))
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    inferred = load_checkpoint(bare)
    assert inferred.meta.arch == f"{name}_nc" and inferred.meta.input_size == size
    assert inferred.meta.num_classes == 5 and inferred.meta.reduction == 8
    assert expected.abs().max() > 1e-2
    for loaded in (own, inferred):
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), expected)


# ----------------------------------------------------------------------------- the contract


class HiddenHead(nn.Module):
    """Conv features, average pool, then a hidden layer before the classifier: CAM is not exact."""

    def __init__(self, hidden: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Sequential(nn.Linear(8, 8), nn.ReLU()) if hidden else nn.Identity()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(torch.flatten(self.pool(self.features(x)), 1)))


def _with_head(model: nn.Module) -> nn.Module:
    return set_head(model.eval(), Head(features="pool", classifier="fc", target_layer="features"))


def test_contract_refuses_a_hidden_layer_in_the_head_and_gradcam_still_draws() -> None:
    torch.manual_seed(0)
    model, x = _with_head(HiddenHead()), torch.randn(2, 3, 16, 16)
    contract = check_cam_contract(model, 16)
    assert not contract.exact and "hidden layer" in contract.reason
    with pytest.raises(UsageError, match=r"CAM is not exact.*method gradcam"):
        compute_cams(model, x)
    out = compute_cams(model, x, method="gradcam")
    assert out.cam.shape == (2, 16, 16) and torch.isfinite(out.cam).all() and out.cam.max() > 0


def test_contract_holds_without_the_hidden_layer() -> None:
    model = _with_head(HiddenHead(hidden=False))
    assert check_cam_contract(model, 16).exact
    out = compute_cams(model, torch.randn(1, 3, 16, 16))
    assert out.cam.shape == (1, 16, 16)


def test_a_classifier_wider_than_the_features_is_named() -> None:
    model = _with_head(HiddenHead())
    model.fc = nn.Linear(8, 4)
    model.hidden = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 8))
    model.fc = nn.Linear(8, 4)
    assert not check_cam_contract(model, 16).exact
    wide = _with_head(HiddenHead(hidden=False))
    wide.hidden, wide.fc = nn.Linear(8, 12), nn.Linear(12, 4)
    contract = check_cam_contract(wide, 16)
    assert not contract.exact and "takes 12 features" in contract.reason and "8 channels" in contract.reason


def test_a_model_without_a_known_head_is_named() -> None:
    with pytest.raises(ValueError, match="Sequential has no known classifier head.*set_head"):
        head_of(nn.Sequential(nn.Conv2d(3, 4, 1)))
