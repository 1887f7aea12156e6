"""Architectures: the registry (name -> builder, target layer, classifier), ResNets and NC blocks.

Importing this package registers every architecture (resnet18 ... resnet152, resnet20/32/44/56/110
and their `_nc` variants).
"""
from __future__ import annotations

from .nc_block import NCBlock, NCWrapper
from .registry import (
    ArchSpec,
    build_model,
    count_parameters,
    describe_archs,
    get_arch,
    list_archs,
    register_arch,
    target_layer,
)
from .resnet import PLACEMENTS, CifarResNet, add_nc_blocks  # noqa: F401  (registers the ResNets)

__all__ = [
    "ArchSpec",
    "CifarResNet",
    "NCBlock",
    "NCWrapper",
    "PLACEMENTS",
    "add_nc_blocks",
    "build_model",
    "count_parameters",
    "describe_archs",
    "get_arch",
    "list_archs",
    "register_arch",
    "target_layer",
]
