"""Architectures: the registry (name -> spec and builder), heads (where CAM's features and
classifier are, and the CAM contract), NC blocks and their placement, and the families.

Importing this package registers every family and architecture (ResNet, ResNeXt, Wide ResNet,
CIFAR ResNet, DenseNet, EfficientNet, MobileNetV2, RegNet and their `_nc` variants) and the
`timm:NAME` resolver.
"""
from __future__ import annotations

from .head import (
    Contract,
    Head,
    check_cam_contract,
    classifier_of,
    contract_from_forward,
    features_hook,
    head_of,
    register_head,
    set_head,
    target_layer,
)
from .nc_block import NCBlock, NCWrapper
from .placement import PLACEMENTS, add_nc_blocks, placement_targets
from .registry import (
    ArchSpec,
    Family,
    build_model,
    count_parameters,
    describe_archs,
    get_arch,
    iter_arch_rows,
    get_family,
    list_archs,
    list_families,
    measured_cam_exact,
    register_arch,
    register_family,
    register_resolver,
)
from .resnet import CifarResNet  # noqa: F401  (registers the ResNet families)
from . import densenet  # noqa: F401  (registers DenseNet)
from . import efficientnet  # noqa: F401  (registers EfficientNet)
from . import mobilenet  # noqa: F401  (registers MobileNetV2)
from . import regnet  # noqa: F401  (registers RegNet)
from .timm_family import timm_head  # registers `timm:NAME` (timm itself is imported on first use)

__all__ = [
    "ArchSpec",
    "CifarResNet",
    "Contract",
    "Family",
    "Head",
    "NCBlock",
    "NCWrapper",
    "PLACEMENTS",
    "add_nc_blocks",
    "build_model",
    "check_cam_contract",
    "classifier_of",
    "contract_from_forward",
    "count_parameters",
    "describe_archs",
    "features_hook",
    "get_arch",
    "get_family",
    "head_of",
    "iter_arch_rows",
    "list_archs",
    "list_families",
    "measured_cam_exact",
    "placement_targets",
    "register_arch",
    "register_family",
    "register_head",
    "register_resolver",
    "set_head",
    "target_layer",
    "timm_head",
]
