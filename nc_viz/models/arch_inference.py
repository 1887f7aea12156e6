"""Architecture and settings of a metadata-less state dict, from its keys and shapes
(README "Checkpoints").

The plain network's keys are recovered from the NC wrappers' (`P.cn.*` dropped, `P.block.*` ->
`P.*`); every family that recognises the key set offers candidates, and the one whose build on
the meta device has exactly those keys and shapes (the classifier's number of classes aside)
wins. NC reduction, placement and input size come from the NC blocks' weights.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from ..core.errors import CheckpointError, CheckpointParameterError
from .meta import ModelMeta
from . import ArchSpec, build_model, get_arch, get_family, list_archs, list_families

__all__ = ["infer_meta", "plain_shapes"]

log = logging.getLogger(__name__)

_NC_SUFFIX = ".cn.fc_in.0.weight"


def infer_meta(state: Mapping[str, torch.Tensor], path: Path | None = None,
               arch: str | None = None) -> ModelMeta:
    """Architecture and settings of a metadata-less state dict, from its keys and shapes.

    `arch` (the user's choice) wins over inference, but NC settings still come from the keys;
    without it, an ambiguous state dict is a CheckpointParameterError that asks for `arch`.
    """
    where = path or "checkpoint"
    nc = _nc_settings(state)
    if arch is None:
        arch = _infer_arch_name(state, where, nc is not None)
    spec = get_arch(arch)
    num_classes = _num_classes(state, spec, where)
    reduction, nc_area = nc if nc else (None, None)
    placement = _placement(state, spec) if nc else None
    input_size, extra = spec.default_input_size, {}
    if spec.nc and nc:
        input_size, spatial = _nc_geometry(spec, state, num_classes, reduction, placement, where)
        if spatial:
            extra["nc_spatial"] = {name: list(size) for name, size in spatial.items()}
    return ModelMeta(
        arch=arch,
        num_classes=num_classes,
        class_names=_imagenet_class_names() if num_classes == 1000 else None,
        preprocess=replace(spec.preprocess, input_size=input_size),
        reduction=reduction if spec.nc else None,
        placement=placement if spec.nc else None,
        extra=extra,
    )


def _num_classes(state: Mapping[str, torch.Tensor], spec: ArchSpec, where: Any) -> int:
    """Rows of the classifier's weight, where the spec's head says the classifier is."""
    key = f"{_plain_layout(spec.base).classifier}.weight"
    if key not in state or state[key].dim() != 2:
        raise CheckpointError(f"{where}: no {key!r} key: not a {spec.base} classifier state dict "
                              f"(first keys: {', '.join(list(state)[:4])})")
    return int(state[key].shape[0])


def _nc_settings(state: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
    """(reduction, area of the first NC block) when the keys hold NC blocks."""
    nc_keys = [k for k in state if k.endswith(_NC_SUFFIX)]
    if not nc_keys:
        return None
    hidden, area = state[nc_keys[0]].shape[:2]
    return int(area) // max(int(hidden), 1), int(area)


def _nc_prefixes(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Qualified names of the modules an NC block wraps (`layer1`, `features.denseblock2`)."""
    return [k[:-len(_NC_SUFFIX)] for k in state if k.endswith(_NC_SUFFIX)]


def _placement(state: Mapping[str, torch.Tensor], spec: ArchSpec) -> str:
    """"stages" when every NC block sits at one of the spec's stages, else "blocks"."""
    return "stages" if set(_nc_prefixes(state)) <= set(spec.stages) else "blocks"


def plain_shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """The key -> shape map of the plain network inside a state dict: NC blocks dropped and the
    wrapped modules' keys (`P.block.*`) put back where the plain network has them (`P.*`)."""
    prefixes = _nc_prefixes(state)
    shapes: dict[str, tuple[int, ...]] = {}
    for key, value in state.items():
        wrapper = next((p for p in prefixes if key.startswith(p + ".")), None)
        if wrapper is not None:
            rest = key[len(wrapper) + 1:]
            if rest.startswith("cn."):
                continue
            key = f"{wrapper}.{rest.removeprefix('block.')}"
        shapes[key] = tuple(value.shape)
    return shapes


@dataclass(frozen=True)
class _Layout:
    """A plain architecture's key -> shape map (1 class) and its classifier's name."""

    shapes: dict[str, tuple[int, ...]]
    classifier: str


@functools.lru_cache(maxsize=None)
def _plain_layout(name: str) -> _Layout:
    from . import head_of

    with torch.device("meta"):
        model = build_model(name, 1)
    return _Layout({k: tuple(v.shape) for k, v in model.state_dict().items()}, head_of(model).classifier)


def _fits(layout: _Layout, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Same keys and shapes, the classifier's number of classes aside."""
    wanted = {k: v for k, v in layout.shapes.items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
    if set(wanted) != set(given):
        return False
    head = (f"{layout.classifier}.weight", f"{layout.classifier}.bias")
    return all(given[k][1:] == v[1:] if k in head else given[k] == v for k, v in wanted.items())


def _candidates(family: str, keys: frozenset[str]) -> list[str]:
    """The family's plain architectures that could hold `keys` (by block counts, where the family
    can count them)."""
    if get_family(family).candidates is not None:
        return list(get_family(family).candidates(keys))
    names = [n for n in list_archs(family) if not get_arch(n).nc]
    count = get_family(family).block_counts
    if count is None:
        return names
    counts = count(keys)
    return [n for n in names if get_arch(n).block_counts == counts]


def _infer_arch_name(state: Mapping[str, torch.Tensor], where: Any, nc: bool) -> str:
    """The one registered architecture whose plain keys and shapes the state dict has."""
    shapes = plain_shapes(state)
    keys = frozenset(shapes)
    families = [f for f in list_families() if get_family(f).recognises(keys)]
    matches = [name for family in families for name in _candidates(family, keys)
               if _fits(_plain_layout(name), shapes)]
    if len(matches) == 1:
        base = matches[0]
        name = f"{base}_nc" if nc else base
        if not nc or name in list_archs():
            return name
        raise CheckpointParameterError("arch", f"{where}: a {base} with NC blocks, but ncviz has no {base}_nc; "
                                               f"pass {{param}}")
    if matches:
        raise CheckpointParameterError("arch", f"{where}: its keys fit several architectures ({', '.join(matches)}); "
                                               f"pass {{param}} (one of them{'' if not nc else ', with _nc'})")
    tried = f"families tried: {', '.join(families)}" if families else "no family recognises its keys"
    raise CheckpointParameterError(
        "arch", f"{where}: cannot tell the architecture from its keys ({tried}; first keys: "
        f"{', '.join(list(shapes)[:3])}); pass {{param}} (see `ncviz models`; a timm model: {{param}} timm:NAME)"
    )


def _built_block_areas(spec: ArchSpec, num_classes: int, input_size: int, reduction: int,
                       placement: str) -> dict[str, tuple[int, int]]:
    """The map size each NC block of `spec` is built for at `input_size`, in module order (built
    on the meta device)."""
    from . import NCWrapper

    with torch.device("meta"):
        model = build_model(spec.name, num_classes, input_size=input_size, reduction=reduction, placement=placement)
    return {name: m.cn.spatial for name, m in model.named_modules() if isinstance(m, NCWrapper)}


def _nc_geometry(spec: ArchSpec, state: Mapping[str, torch.Tensor], num_classes: int, reduction: int,
                 placement: str, where: Any) -> tuple[int, dict[str, tuple[int, int]]]:
    """Input size and per-block map sizes of a metadata-less NC state dict.

    The input size at which every block sees its own map size (the size it was built for) is
    taken when there is one. Otherwise (the published CIFAR code builds some blocks for a smaller
    map than they see, and resizes) the architecture's default input size, with each such block
    built for the square map its weights hold.
    """
    areas = {k[:-len(_NC_SUFFIX)]: int(v.shape[1]) for k, v in state.items() if k.endswith(_NC_SUFFIX)}
    size = spec.default_input_size
    built = _built_block_areas(spec, num_classes, size, reduction, placement)
    for candidate in dict.fromkeys((_nominal_input_size(spec, built, areas), size)):
        if candidate != size:
            built = _built_block_areas(spec, num_classes, candidate, reduction, placement)
        if set(built) == set(areas) and all(h * w == areas[n] for n, (h, w) in built.items()):
            return candidate, {}
    built = _built_block_areas(spec, num_classes, size, reduction, placement)
    spatial = {}
    for name, area in areas.items():
        if name in built and built[name][0] * built[name][1] != area:
            side = math.isqrt(area)
            if side * side != area:
                raise CheckpointError(f"{where}: the NC block at {name} holds a map of {area} positions, "
                                      f"which is not square; its map size cannot be told")
            spatial[name] = (side, side)
    if spatial:
        log.info("%s: %d NC block(s) built for a smaller map than they see at %d px (%s); they resize, "
                 "as the published code does", where, len(spatial), size, ", ".join(sorted(spatial)))
    return size, spatial


def _nominal_input_size(spec: ArchSpec, built: Mapping[str, tuple[int, int]], areas: Mapping[str, int]) -> int:
    """Input size at which the first NC block sees the map its weights hold: the default input
    size scaled by the ratio of the map sides (file / built at the default size)."""
    first = next((name for name in built if name in areas), None)
    if first is None:
        return spec.default_input_size
    side_file, (side_built, _) = math.isqrt(areas[first]), built[first]
    scaled = spec.default_input_size * side_file
    return scaled // side_built if side_built and scaled % side_built == 0 else spec.default_input_size


def _imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names shipped in torchvision's weight metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
