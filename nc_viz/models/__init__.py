"""Architectures: the registry (name -> spec and builder), heads (where CAM's features and
classifier are, and the CAM contract), NC blocks and their placement, and the families.

Importing this package registers every family and architecture (ResNet, ResNeXt, Wide ResNet,
CIFAR ResNet, DenseNet, EfficientNet, MobileNetV2, RegNet and their `_nc` variants) and the
`timm:NAME` resolver: it imports every module of the package, and a family module registers its
family and architectures when imported, so a new family module is found with no other edit. The
ResNet families are registered first (they are re-exported below), the others in module-name
order: the order of `list_families()`.
"""
from __future__ import annotations

import sys

from ..core.registry import import_modules

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

import_modules(__name__, sys.modules[__name__].__path__)   # every other family module registers itself

from .timm_family import timm_head  # noqa: E402  (`timm:NAME`; timm itself is imported on first use)

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
