"""Architecture inference for the ResNet families (torchvision ResNet, ResNeXt, Wide ResNet and the
CIFAR ResNets): where key names are shared, the layer shapes decide."""
from __future__ import annotations

import pytest
import torch

from nc_viz.models.arch_inference import _infer_arch_name, infer_meta
from nc_viz.core.errors import CheckpointError
from nc_viz.models import build_model

FIFTY = ("resnet50", "resnext50_32x4d", "wide_resnet50_2")               # same keys, other widths / groups
HUNDRED_ONE = ("resnet101", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2")


def _meta_state(name: str, classes: int = 1000) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_model(name, classes).state_dict()


@pytest.mark.parametrize("group", [FIFTY, HUNDRED_ONE])
def test_same_keys_told_apart_by_their_shapes(group):
    states = {name: _meta_state(name) for name in group}
    keys = {name: set(state) for name, state in states.items()}
    assert all(k == keys[group[0]] for k in keys.values())           # the names alone cannot tell them apart
    for name, state in states.items():
        assert _infer_arch_name(state, "x", nc=False) == name


def test_nc_twins_of_the_same_keys_and_the_small_resnets():
    for name in (*FIFTY, "resnet18"):
        assert _infer_arch_name(_meta_state(f"{name}_nc"), "x", nc=True) == f"{name}_nc"
    assert _infer_arch_name(_meta_state("resnet18"), "x", nc=False) == "resnet18"
    for name in ("resnet20", "resnet56"):                               # CIFAR: 3 stages, n blocks each
        assert _infer_arch_name(_meta_state(name, 10), "x", nc=False) == name
        assert infer_meta(_meta_state(f"{name}_nc", 10)).arch == f"{name}_nc"


def test_a_layer_of_no_known_width_is_refused_not_guessed():
    """A ResNet-50 whose one 3 x 3 conv is 80 channels wide (64 in ResNet-50, 128 in the others):
    every key is a ResNet-50's, no shape fits any architecture."""
    state = dict(_meta_state("resnet50"))
    state["layer1.0.conv2.weight"] = torch.empty(80, 64, 3, 3, device="meta")
    with pytest.raises(CheckpointError, match="cannot tell the architecture"):
        _infer_arch_name(state, "x", nc=False)
    assert infer_meta(_meta_state("wide_resnet50_2", 7)).num_classes == 7    # the classifier's rows aside
