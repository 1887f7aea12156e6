"""Architecture registry: name -> (ArchSpec, builder), as timm's `register_model`.

Model modules (`resnet.py`) register their architectures when imported; `nc_viz.models`
imports them, so the registry is full as soon as the package is.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

__all__ = ["ArchSpec", "register_arch", "get_arch", "list_archs", "build_model", "target_layer",
           "count_parameters", "describe_archs"]

Builder = Callable[..., nn.Module]
"""builder(num_classes, *, input_size, reduction, placement, stem_stride, nc_spatial) -> nn.Module"""

FAMILIES = ("imagenet", "cifar")


@dataclass(frozen=True)
class ArchSpec:
    """What an architecture name stands for."""

    name: str                      # e.g. "resnet101_nc"
    base: str                      # the plain architecture, e.g. "resnet101"
    family: str                    # "imagenet" | "cifar"
    nc: bool                       # has NC blocks
    default_input_size: int        # 224 imagenet, 32 cifar
    stages: int                    # residual stages: 4 imagenet, 3 cifar
    block_counts: tuple[int, ...]  # residual blocks per stage, e.g. (3, 4, 23, 3)
    bottleneck: bool               # Bottleneck (True) or BasicBlock (False) residual blocks


_REGISTRY: dict[str, tuple[ArchSpec, Builder]] = {}


def register_arch(spec: ArchSpec, builder: Builder) -> None:
    """Register `builder` under `spec.name`; a different spec under a taken name is an error."""
    if spec.family not in FAMILIES:
        raise ValueError(f"architecture {spec.name!r}: unknown family {spec.family!r}; known: {', '.join(FAMILIES)}")
    if len(spec.block_counts) != spec.stages:
        raise ValueError(f"architecture {spec.name!r}: {len(spec.block_counts)} block counts for {spec.stages} stages")
    known = _REGISTRY.get(spec.name)
    if known is not None and known[0] != spec:
        raise ValueError(f"architecture {spec.name!r} is already registered with another spec")
    _REGISTRY[spec.name] = (spec, builder)


def list_archs() -> list[str]:
    """All registered architecture names, sorted (resnet18 before resnet101)."""
    return sorted(_REGISTRY, key=_natural_key)


def get_arch(name: str) -> ArchSpec:
    """The spec of `name`; an unknown name raises ValueError listing the known ones."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(_unknown_message(name))
    return entry[0]


def build_model(name: str, num_classes: int = 1000, *, input_size: int | None = None, reduction: int = 8,
                placement: str = "stages", stem_stride: int = 1,
                nc_spatial: Mapping[str, tuple[int, int]] | None = None) -> nn.Module:
    """A freshly initialised model of architecture `name` (no weights are downloaded).

    `input_size` (default: the architecture's) fixes the feature-map sizes the NC blocks are
    built for; `reduction` and `placement` apply to `_nc` architectures only and are ignored
    otherwise. `nc_spatial` builds the NC block in front of a named module (e.g. `layer1`)
    for another map size than the one it sees (checkpoints whose blocks were built so).
    `stem_stride` is for CIFAR ResNets only (2 suits 64-px inputs).
    """
    spec = get_arch(name)
    if not _positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    size = spec.default_input_size if input_size is None else input_size
    if not _positive_int(size):
        raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
    if not _positive_int(stem_stride):
        raise ValueError(f"stem_stride must be a positive integer, got {stem_stride!r}")
    if stem_stride != 1 and spec.family != "cifar":
        raise ValueError(f"stem_stride applies to CIFAR ResNets only; {name} is a {spec.family} ResNet")
    if spec.nc and not _positive_int(reduction):
        raise ValueError(f"reduction must be a positive integer, got {reduction!r}")
    builder = _REGISTRY[name][1]
    return builder(num_classes, input_size=size, reduction=reduction, placement=placement, stem_stride=stem_stride,
                   nc_spatial=nc_spatial)


def target_layer(model: nn.Module) -> nn.Module:
    """The last residual stage (`layer4`, or `layer3` of a CIFAR ResNet), wrapper included.

    This is the layer a gradient-based CAM (grad-cam's `target_layers`) hooks.
    """
    stages = [(int(m.group(1)), name) for name, _ in model.named_children()
              if (m := re.fullmatch(r"layer(\d+)", name))]
    if not stages:
        raise ValueError(f"{type(model).__name__} has no residual stage named layer1, layer2, ...")
    return model.get_submodule(max(stages)[1])


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of `model` (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def describe_archs(num_classes: int = 1000, reduction: int = 8, placement: str = "stages") -> list[dict[str, Any]]:
    """One row per architecture: its spec fields and parameter count at its default input size.

    Models are built on the meta device: no memory is allocated and no weights initialised.
    """
    rows = []
    for name in list_archs():
        spec = get_arch(name)
        with torch.device("meta"):
            model = build_model(name, num_classes, reduction=reduction, placement=placement)
        rows.append({"name": name, "base": spec.base, "family": spec.family, "nc": spec.nc,
                     "input_size": spec.default_input_size, "block_counts": spec.block_counts,
                     "bottleneck": spec.bottleneck, "parameters": count_parameters(model)})
    return rows


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _unknown_message(name: object) -> str:
    known = list_archs()
    message = f"unknown architecture {name!r}; known: {', '.join(known)}"
    close = difflib.get_close_matches(str(name), known, n=3)
    return message + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
