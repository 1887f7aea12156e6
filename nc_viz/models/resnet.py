"""ResNets: torchvision's ImageNet ResNets, CIFAR ResNets (He et al. 2016), their `_nc` variants.

Every model has `avgpool` (its input is the CAM feature tensor) and `fc` (an nn.Linear).
The architectures are registered in `registry` at import time (see `_register_all`).
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from .nc_block import NCBlock, NCWrapper
from .registry import ArchSpec, register_arch

__all__ = ["CifarResNet", "cifar_resnet", "torchvision_resnet", "add_nc_blocks", "stage_names", "PLACEMENTS"]

log = logging.getLogger(__name__)

PLACEMENTS = ("stages", "blocks")
_FAMILY_STAGES = {"imagenet": 4, "cifar": 3}

# name -> (blocks per stage, bottleneck blocks)
_IMAGENET = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
    "resnet152": ((3, 8, 36, 3), True),
}
_CIFAR_DEPTHS = (20, 32, 44, 56, 110)


# ----------------------------------------------------------------------------- CIFAR ResNets


class CifarResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016, sec. 4.2) with 1x1-conv (option B) projection shortcuts.

    3x3 conv stem (16 channels), three stages of BasicBlocks (16/32/64 channels, strides
    1/2/2), global average pool, linear classifier. `stem_stride=2` halves every feature map,
    so a 64-px input gives the feature sizes of a 32-px input at stride 1.
    """

    def __init__(self, depth: int, num_classes: int = 10, stem_stride: int = 1) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        _check_positive("num_classes", num_classes)
        _check_positive("stem_stride", stem_stride)
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 16, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _cifar_stage(16, 16, n, stride=1)
        self.layer2 = _cifar_stage(16, 32, n, stride=2)
        self.layer3 = _cifar_stage(32, 64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _cifar_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One stage of `blocks` BasicBlocks; the first may project its shortcut (1x1 conv + BN)."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions and unit BatchNorm, as torchvision's ResNet."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def cifar_resnet(depth: int, num_classes: int = 10, stem_stride: int = 1) -> CifarResNet:
    """A CIFAR ResNet of `depth` = 6n + 2 layers (20, 32, 56, ...)."""
    return CifarResNet(depth, num_classes, stem_stride)


def torchvision_resnet(name: str, num_classes: int = 1000) -> nn.Module:
    """torchvision's `name` (resnet18 ... resnet152) with random weights (nothing downloaded)."""
    if name not in _IMAGENET:
        raise ValueError(f"unknown torchvision ResNet {name!r}; known: {', '.join(_IMAGENET)}")
    _check_positive("num_classes", num_classes)
    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


# ----------------------------------------------------------------------------- NC placement


def stage_names(family: str) -> list[str]:
    """Names of the residual stages of a ResNet of `family` ("imagenet" or "cifar")."""
    if family not in _FAMILY_STAGES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(_FAMILY_STAGES)}")
    return [f"layer{i}" for i in range(1, _FAMILY_STAGES[family] + 1)]


def _placement_targets(model: nn.Module, family: str, placement: str) -> list[str]:
    """Qualified names of the modules that get an NC block in front of them."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown NC placement {placement!r}; known: {', '.join(PLACEMENTS)}")
    stages = stage_names(family)
    modules = [_stage(model, name) for name in stages]
    if placement == "stages":
        return stages
    targets = []
    for s, (stage, module) in enumerate(zip(stages, modules)):
        last = s == len(stages) - 1
        for i in range(len(module)):
            if i == 0 or (not last and i % 4 == 0):
                targets.append(f"{stage}.{i}")
    return targets


def _stage(model: nn.Module, name: str) -> nn.Sequential:
    """The residual stage `name` of `model`; an error if missing or already NC-wrapped."""
    module = getattr(model, name, None)
    if isinstance(module, NCWrapper):
        raise ValueError(f"{name} already has NC blocks")
    if not isinstance(module, nn.Sequential):
        raise ValueError(f"{type(model).__name__} has no residual stage {name} (an nn.Sequential of blocks)")
    if any(isinstance(block, NCWrapper) for block in module):
        raise ValueError(f"{name} already has NC blocks")
    return module


def _input_shapes(model: nn.Module, names: list[str], input_size: int) -> dict[str, torch.Size]:
    """Shape of the tensor entering each named module for one 3 x S x S input (dummy forward)."""
    shapes: dict[str, torch.Size] = {}
    param = next(model.parameters())
    handles = []
    for name in names:
        def hook(_module: nn.Module, args: tuple, name: str = name) -> None:
            shapes[name] = args[0].shape
        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return shapes


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` at the qualified `name` of `model` (works for Sequential indices)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def add_nc_blocks(model: nn.Module, family: str, input_size: int, reduction: int = 8,
                  placement: str = "stages", spatial: Mapping[str, tuple[int, int]] | None = None) -> nn.Module:
    """Wrap the modules chosen by `placement` as NCWrapper(NCBlock, module), in place.

    Each block is built for the feature map its module sees at the nominal `input_size`
    (found by one dummy forward), unless `spatial` names another size for that module.
    Returns `model`.
    """
    _check_positive("input_size", input_size)
    names = _placement_targets(model, family, placement)
    unknown = sorted(set(spatial or {}) - set(names))
    if unknown:
        raise ValueError(f"NC block sizes given for {', '.join(unknown)}, which the {placement} placement "
                         f"does not wrap")
    shapes = _input_shapes(model, names, input_size)
    param = next(model.parameters())
    for name in names:
        _, channels, h, w = shapes[name]
        size = tuple((spatial or {}).get(name, (h, w)))
        cn = NCBlock(channels, size, reduction).to(device=param.device, dtype=param.dtype)
        _replace(model, name, NCWrapper(cn, model.get_submodule(name)))
    log.debug("added %d NC blocks (%s, reduction %d, input %d)", len(names), placement, reduction, input_size)
    return model


def _check_positive(what: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


# ----------------------------------------------------------------------------- registration

Builder = Callable[..., nn.Module]


def _imagenet_builder(name: str, nc: bool) -> Builder:
    def build(num_classes: int, *, input_size: int, reduction: int, placement: str,
              stem_stride: int, nc_spatial: Mapping[str, tuple[int, int]] | None = None) -> nn.Module:
        model = torchvision_resnet(name, num_classes)
        return add_nc_blocks(model, "imagenet", input_size, reduction, placement, nc_spatial) if nc else model
    return build


def _cifar_builder(depth: int, nc: bool) -> Builder:
    def build(num_classes: int, *, input_size: int, reduction: int, placement: str,
              stem_stride: int, nc_spatial: Mapping[str, tuple[int, int]] | None = None) -> nn.Module:
        model = cifar_resnet(depth, num_classes, stem_stride)
        return add_nc_blocks(model, "cifar", input_size, reduction, placement, nc_spatial) if nc else model
    return build


def _register_all() -> None:
    """Register resnet18 ... resnet152, resnet20/32/44/56/110 and each `<name>_nc`."""
    for base, (counts, bottleneck) in _IMAGENET.items():
        for nc in (False, True):
            spec = ArchSpec(name=base + "_nc" * nc, base=base, family="imagenet", nc=nc,
                            default_input_size=224, stages=4, block_counts=counts, bottleneck=bottleneck)
            register_arch(spec, _imagenet_builder(base, nc))
    for depth in _CIFAR_DEPTHS:
        base, n = f"resnet{depth}", (depth - 2) // 6
        for nc in (False, True):
            spec = ArchSpec(name=base + "_nc" * nc, base=base, family="cifar", nc=nc,
                            default_input_size=32, stages=3, block_counts=(n, n, n), bottleneck=False)
            register_arch(spec, _cifar_builder(depth, nc))


_register_all()
