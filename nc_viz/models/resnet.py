"""ResNets: torchvision's ImageNet ResNets, ResNeXts and Wide ResNets, CIFAR ResNets (He et al.
2016), and their `_nc` variants (one NC block at the input of each residual stage).

Every model pools the input of `avgpool` (the CAM feature tensor) into `fc` (an nn.Linear).
The families and architectures are registered in `registry` at import time (`_register_all`);
torchvision is imported only when one of its ResNets is built (a CIFAR ResNet needs none).
"""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

from ..core.constants import CIFAR_MEAN, CIFAR_STD
from .head import Head, register_head
from .placement import PLACEMENTS, family_builder
from .preprocessing import Preprocess
from .registry import ArchSpec, Family, register_arch, register_family
from .torchvision_family import check_positive, count_blocks

__all__ = ["CifarResNet", "cifar_resnet", "torchvision_resnet", "PLACEMENTS"]

_IMAGENET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_CIFAR_STAGES = ("layer1", "layer2", "layer3")

# name -> (blocks per stage, bottleneck blocks); the family the name belongs to
_IMAGENET = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
    "resnet152": ((3, 8, 36, 3), True),
    "resnext50_32x4d": ((3, 4, 6, 3), True),
    "resnext101_32x8d": ((3, 4, 23, 3), True),
    "resnext101_64x4d": ((3, 4, 23, 3), True),
    "wide_resnet50_2": ((3, 4, 6, 3), True),
    "wide_resnet101_2": ((3, 4, 23, 3), True),
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
        check_positive("num_classes", num_classes)
        check_positive("stem_stride", stem_stride)
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


class BasicBlock(nn.Module):
    """torchvision's `BasicBlock` (two 3x3 conv + BN, ReLU after the sum), the same modules under
    the same names, so that a state dict of either loads into the other."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # in torchvision's order
        return self.relu(out)


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
    """Kaiming-normal convolutions and unit BatchNorm, as torchvision's ResNet. Nothing on the meta
    device (a model built there only to receive a checkpoint's tensors: its values do not exist, and
    torch's meta `normal_` would import its compiler, seconds of start-up)."""
    if any(p.is_meta for p in model.parameters()):
        return
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
    """torchvision's `name` (resnet18 ... resnet152, resnext*, wide_resnet*) with random weights
    (nothing downloaded)."""
    if name not in _IMAGENET:
        raise ValueError(f"unknown torchvision ResNet {name!r}; known: {', '.join(_IMAGENET)}")
    check_positive("num_classes", num_classes)
    import torchvision

    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


# ----------------------------------------------------------------------------- registration


def _resnet_keys(keys: frozenset[str]) -> bool:
    """A ResNet-style key set: a stem conv and residual stages named layer1, layer2, ..."""
    return "conv1.weight" in keys and "fc.weight" in keys and any(k.startswith("layer1.0.") for k in keys)


_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")


def _resnet_block_counts(keys: frozenset[str]) -> tuple[int, ...]:
    """Residual blocks per stage, from keys `layerS.I.*`."""
    return count_blocks(keys, _BLOCK_KEY)


def _family_of(name: str) -> str:
    return "resnext" if name.startswith("resnext") else "wide_resnet" if name.startswith("wide_") else "resnet"


def _imagenet_plain(name: str) -> Callable[..., nn.Module]:
    def plain(num_classes: int, stem_stride: int = 1) -> nn.Module:
        return torchvision_resnet(name, num_classes)
    return plain


def _cifar_plain(depth: int) -> Callable[..., nn.Module]:
    def plain(num_classes: int, stem_stride: int = 1) -> nn.Module:
        return cifar_resnet(depth, num_classes, stem_stride)
    return plain


def _register_all() -> None:
    """Register the ResNet families, every architecture and each `<name>_nc`."""
    for family, text in (("resnet", "torchvision ResNet 18-152"), ("resnext", "torchvision ResNeXt"),
                         ("wide_resnet", "torchvision Wide ResNet")):
        register_family(Family(family, _resnet_keys, text, block_counts=_resnet_block_counts))
    register_family(Family("cifar_resnet", _resnet_keys, "CIFAR ResNet 6n+2 (He et al. 2016)", stem_stride=True,
                           block_counts=_resnet_block_counts))
    register_head("torchvision.models.resnet.ResNet", Head(features="avgpool", classifier="fc", target_layer="layer4"))
    register_head(CifarResNet, Head(features="avgpool", classifier="fc", target_layer="layer3"))
    for base, (counts, bottleneck) in _IMAGENET.items():
        for nc in (False, True):
            spec = ArchSpec(name=base + "_nc" * nc, base=base, family=_family_of(base), nc=nc,
                            preprocess=Preprocess(224), stages=_IMAGENET_STAGES, placements=PLACEMENTS,
                            block_counts=counts, bottleneck=bottleneck)
            register_arch(spec, family_builder(_imagenet_plain(base), spec))
    for depth in _CIFAR_DEPTHS:
        base, n = f"resnet{depth}", (depth - 2) // 6
        for nc in (False, True):
            spec = ArchSpec(name=base + "_nc" * nc, base=base, family="cifar_resnet", nc=nc,
                            preprocess=Preprocess(32, CIFAR_MEAN, CIFAR_STD, crop_pct=1.0),
                            stages=_CIFAR_STAGES, placements=PLACEMENTS, block_counts=(n, n, n))
            register_arch(spec, family_builder(_cifar_plain(depth), spec))


_register_all()
