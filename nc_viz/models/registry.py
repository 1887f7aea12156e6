"""Architecture registry: name -> (ArchSpec, builder), as timm's `register_model`.

Family modules (`resnet.py`, ...) register their family and architectures when imported;
`nc_viz.models` imports them, so the registry is full as soon as the package is. A name with a
registered prefix (`timm:NAME`) is resolved on first use by that prefix's resolver. Families,
architectures and resolvers are each a `NamedRegistry`, as the CAM methods are.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import torch
from torch import nn

from ..core.registry import NamedRegistry
from .head import check_cam_contract
from .preprocessing import Preprocess

__all__ = ["ArchSpec", "Family", "register_family", "get_family", "list_families", "register_arch", "get_arch",
           "list_archs", "build_model", "count_parameters", "describe_archs", "iter_arch_rows", "register_resolver", "measured_cam_exact"]

Builder = Callable[..., nn.Module]
"""builder(num_classes, *, input_size, reduction, placement, stem_stride, nc_spatial) -> nn.Module"""


@dataclass(frozen=True)
class Family:
    """What all architectures of one family share: how their state-dict keys look.

    `recognises(keys)` says cheaply whether a plain (NC wrappers removed) key set could be one
    of the family's; the exact architecture is then found by comparing shapes with each
    candidate built on the meta device. `block_counts(keys)`, where given, narrows the candidates
    to the specs with those `block_counts` first. `stem_stride`: the family takes a stem stride.
    `candidates(keys)`, where given, names the architectures to try instead of the family's
    registered ones (resolved names such as `timm:resnet50d`).
    """

    name: str
    recognises: Callable[[frozenset[str]], bool]
    description: str = ""
    stem_stride: bool = False
    block_counts: Callable[[frozenset[str]], tuple[int, ...]] | None = None
    candidates: Callable[[frozenset[str]], tuple[str, ...]] | None = None


@dataclass(frozen=True)
class ArchSpec:
    """What an architecture name stands for."""

    name: str                      # e.g. "resnet101_nc"
    base: str                      # the plain architecture, e.g. "resnet101"
    family: str                    # a registered Family's name, e.g. "resnet"
    nc: bool                       # has NC blocks
    preprocess: Preprocess         # the default preprocessing: 224 px ImageNet, 32 px CIFAR, ...
    stages: tuple[str, ...]        # modules that get an NC block at their input ("stages" placement)
    cam_exact: bool = True         # logits = W . mean_xy F + b (checked by tests for every family)
    placements: tuple[str, ...] = ("stages",)
    block_counts: tuple[int, ...] = ()   # blocks per stage of the family's own layout (what its
                                        # Family.block_counts counts in the keys; not the NC stages)
    bottleneck: bool = False             # ResNets: Bottleneck (True) or BasicBlock residual blocks
    details: tuple[tuple[str, Any], ...] = field(default=())  # anything else the family wants to record

    @property
    def default_input_size(self) -> int:
        """The input side the models are built for: the default preprocessing's `input_size`."""
        return self.preprocess.input_size


class _Arch(NamedTuple):
    """A registered architecture: its spec and its builder."""

    name: str
    spec: ArchSpec
    build: Builder


class _Resolver(NamedTuple):
    """Names `<name>:NAME` are resolved by `resolve(NAME)`."""

    name: str
    resolve: Callable[[str], tuple[ArchSpec, Builder]]


_FAMILIES: NamedRegistry[Family] = NamedRegistry("family")
_ARCHS: NamedRegistry[_Arch] = NamedRegistry("architecture")
_RESOLVERS: NamedRegistry[_Resolver] = NamedRegistry("resolver")
_RESOLVED: dict[str, tuple[ArchSpec, Builder]] = {}  # what the resolvers gave, by full name (a cache)


def register_family(family: Family) -> None:
    """Register a family (its name must be new, or the same object)."""
    if _FAMILIES.items.get(family.name) != family:
        _FAMILIES.register(family)


def get_family(name: str) -> Family:
    """The family called `name`."""
    family = _FAMILIES.items.get(name)
    if family is None:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(sorted(_FAMILIES.items))}")
    return family


def list_families() -> list[str]:
    """Registered family names, in registration order."""
    return list(_FAMILIES.names())


def register_arch(spec: ArchSpec, builder: Builder) -> None:
    """Register `builder` under `spec.name`; a different spec under a taken name is an error
    (the same spec again replaces the builder)."""
    get_family(spec.family)
    known = _ARCHS.items.get(spec.name)
    if known is not None and known.spec == spec:
        _ARCHS.unregister(spec.name)
    _ARCHS.register(_Arch(spec.name, spec, builder))


def register_resolver(prefix: str, resolve: Callable[[str], tuple[ArchSpec, Builder]]) -> None:
    """Names `prefix:NAME` are resolved by `resolve(NAME)` on first use (e.g. `timm:`)."""
    _RESOLVERS.register(_Resolver(prefix, resolve))


def list_archs(family: str | None = None) -> list[str]:
    """Registered architecture names (of `family`), sorted naturally (resnet18 before resnet101)."""
    names = _ARCHS.names(lambda arch: family is None or arch.spec.family == family)
    return sorted(names, key=_natural_key)


def _entry(name: str) -> tuple[ArchSpec, Builder]:
    arch = _ARCHS.items.get(name)
    entry = (arch.spec, arch.build) if arch is not None else _RESOLVED.get(name)
    if entry is None and isinstance(name, str) and ":" in name:
        prefix, _, rest = name.partition(":")
        resolver = _RESOLVERS.items.get(prefix)
        if resolver is not None:
            entry = resolver.resolve(rest)
            _RESOLVED[name] = entry
    if entry is None:
        raise ValueError(_unknown_message(name))
    return entry


def get_arch(name: str) -> ArchSpec:
    """The spec of `name`; an unknown name raises ValueError listing the known ones."""
    return _entry(name)[0]


def build_model(name: str, num_classes: int = 1000, *, input_size: int | None = None, reduction: int = 8,
                placement: str = "stages", stem_stride: int = 1,
                nc_spatial: Mapping[str, tuple[int, int]] | None = None) -> nn.Module:
    """A freshly initialised model of architecture `name` (no weights are downloaded).

    `input_size` (default: the architecture's) fixes the feature-map sizes the NC blocks are
    built for; `reduction` and `placement` apply to `_nc` architectures only and are ignored
    otherwise. `nc_spatial` builds the NC block in front of a named module for another map size
    than the one it sees (checkpoints whose blocks were built so). `stem_stride` is for the
    families that take one (CIFAR ResNets: 2 suits 64-px inputs).
    """
    spec, builder = _entry(name)
    if not _positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    size = spec.default_input_size if input_size is None else input_size
    if not _positive_int(size):
        raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
    if not _positive_int(stem_stride):
        raise ValueError(f"stem_stride must be a positive integer, got {stem_stride!r}")
    if stem_stride != 1 and not get_family(spec.family).stem_stride:
        raise ValueError(f"stem_stride applies to CIFAR ResNets only; {name} is of the {spec.family} family")
    if spec.nc and not _positive_int(reduction):
        raise ValueError(f"reduction must be a positive integer, got {reduction!r}")
    if spec.nc and placement not in spec.placements:
        raise ValueError(f"placement {placement!r} is not available for {name}; "
                         f"choose from {', '.join(spec.placements)}")
    return builder(num_classes, input_size=size, reduction=reduction, placement=placement, stem_stride=stem_stride,
                   nc_spatial=nc_spatial)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of `model` (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def describe_archs(num_classes: int = 1000, reduction: int = 8, placement: str = "stages",
                   family: str | None = None) -> list[dict[str, Any]]:
    """One row per architecture: its spec fields and parameter count at its default input size."""
    return list(iter_arch_rows(num_classes, reduction, placement, family))


def iter_arch_rows(num_classes: int = 1000, reduction: int = 8, placement: str = "stages",
                   family: str | None = None) -> Iterator[dict[str, Any]]:
    """`describe_archs`' rows one at a time (each costs a build on the meta device: no memory is
    allocated and no weights initialised, but a large model still takes a second)."""
    for name in list_archs(family):
        spec = get_arch(name)
        chosen = placement if placement in spec.placements else spec.placements[0]
        with torch.device("meta"):
            model = build_model(name, num_classes, reduction=reduction, placement=chosen)
        yield {"name": name, "base": spec.base, "family": spec.family, "nc": spec.nc,
               "input_size": spec.default_input_size, "block_counts": spec.block_counts,
               "bottleneck": spec.bottleneck, "cam_exact": spec.cam_exact, "parameters": count_parameters(model)}


def measured_cam_exact(name: str, num_classes: int = 10, input_size: int | None = None) -> bool:
    """Build `name` with random weights and check the CAM contract numerically (for tests)."""
    spec = get_arch(name)
    size = input_size or spec.default_input_size
    model = build_model(name, num_classes, input_size=size)
    return check_cam_contract(model, size).exact


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _unknown_message(name: object) -> str:
    known = list_archs()
    prefixes = "".join(f"; or {p}:NAME" for p in _RESOLVERS.items)
    message = f"unknown architecture {name!r}; known: {', '.join(known)}{prefixes}"
    close = difflib.get_close_matches(str(name), known, n=3)
    return message + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
