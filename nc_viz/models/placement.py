"""Where NC blocks go in any family, and the builder every family's `_nc` variant shares.

A family names its stages (qualified module names) in its specs; the "stages" placement puts
one NC block at the input of each stage, the "blocks" placement (ResNets, as the published
code) one at the input of the first block of each stage and of every 4th block except in the
last stage. Nothing here knows a family.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .nc_block import NCBlock, NCWrapper
from .registry import ArchSpec, Builder

__all__ = ["PLACEMENTS", "placement_targets", "add_nc_blocks", "family_builder"]

log = logging.getLogger(__name__)

PLACEMENTS = ("stages", "blocks")


def placement_targets(model: nn.Module, stages: Sequence[str], placement: str) -> list[str]:
    """Qualified names of the modules that get an NC block in front of them."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement: unknown NC placement {placement!r}; known: {', '.join(PLACEMENTS)}")
    modules = [_stage(model, name) for name in stages]
    if placement == "stages":
        return list(stages)
    targets = []
    for s, (stage, module) in enumerate(zip(stages, modules)):
        if not isinstance(module, nn.Sequential):
            raise ValueError(f"placement: the blocks placement needs stages made of blocks; {stage} is a "
                             f"{type(module).__name__}")
        last = s == len(stages) - 1
        targets += [f"{stage}.{i}" for i in range(len(module)) if i == 0 or (not last and i % 4 == 0)]
    return targets


def _stage(model: nn.Module, name: str) -> nn.Module:
    """The stage `name` of `model`; an error if missing or already NC-wrapped."""
    try:
        module = model.get_submodule(name)
    except AttributeError as exc:
        raise ValueError(f"stages: {type(model).__name__} has no stage {name}") from exc
    if isinstance(module, NCWrapper) or any(isinstance(m, NCWrapper) for m in module.modules()):
        raise ValueError(f"stages: {name} already has NC blocks")
    return module


class _AllSeen(Exception):
    """Raised by the last shape hook: the rest of the forward pass is not needed."""


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _input_shapes(model: nn.Module, names: list[str], input_size: int) -> dict[str, torch.Size]:
    """Shape of the tensor entering each named module for one 3 x S x S input (dummy forward).

    The pass stops once every named module has been reached. On the meta device the batch norms
    are skipped (they keep the shape): torch's meta kernels of batch norm and pooling are Python
    code that imports torch's compiler, seconds of start-up."""
    shapes: dict[str, torch.Size] = {}
    param = next(model.parameters())
    skipped = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if param.is_meta else []
    for norm in skipped:
        norm.forward = _same  # an instance attribute: this model only, removed below
    handles = []
    for name in names:
        def hook(_module: nn.Module, args: tuple, name: str = name) -> None:
            shapes.setdefault(name, args[0].shape)
            if len(shapes) == len(names):
                raise _AllSeen
        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype))
    except _AllSeen:
        pass
    finally:
        for handle in handles:
            handle.remove()
        for norm in skipped:
            del norm.forward
        model.train(was_training)
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ValueError(f"stages: {', '.join(missing)} never ran in a forward pass of {type(model).__name__}")
    return shapes


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` at the qualified `name` of `model` (works for Sequential indices)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def add_nc_blocks(model: nn.Module, stages: Sequence[str], input_size: int, reduction: int = 8,
                  placement: str = "stages", spatial: Mapping[str, tuple[int, int]] | None = None) -> nn.Module:
    """Wrap the modules chosen by `placement` among `stages` as NCWrapper(NCBlock, module), in place.

    Each block is built for the feature map its module sees at the nominal `input_size`
    (found by one dummy forward), unless `spatial` names another size for that module.
    Returns `model`.
    """
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1:
        raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
    names = placement_targets(model, stages, placement)
    unknown = sorted(set(spatial or {}) - set(names))
    if unknown:
        raise ValueError(f"nc_spatial: NC block sizes given for {', '.join(unknown)}, which the {placement} "
                         f"placement does not wrap")
    shapes = _input_shapes(model, names, input_size)
    param = next(model.parameters())
    for name in names:
        _, channels, h, w = shapes[name]
        size = tuple((spatial or {}).get(name, (h, w)))
        cn = NCBlock(channels, size, reduction).to(device=param.device, dtype=param.dtype)
        _replace(model, name, NCWrapper(cn, model.get_submodule(name)))
    log.debug("added %d NC blocks (%s, reduction %d, input %d)", len(names), placement, reduction, input_size)
    return model


def family_builder(plain: Callable[..., nn.Module], spec: ArchSpec) -> Builder:
    """The builder of `spec`: `plain(num_classes, stem_stride=...)` builds the plain network;
    an `_nc` spec then gets NC blocks at its stages."""
    def build(num_classes: int, *, input_size: int, reduction: int, placement: str, stem_stride: int = 1,
              nc_spatial: Mapping[str, tuple[int, int]] | None = None) -> nn.Module:
        model = plain(num_classes, stem_stride=stem_stride)
        if spec.nc:
            add_nc_blocks(model, spec.stages, input_size, reduction, placement, nc_spatial)
        return model
    return build
