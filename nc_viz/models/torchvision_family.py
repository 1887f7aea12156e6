"""What the torchvision family modules share: default preprocessing (a `Preprocess`) read from
torchvision's weight enums (no download), block counting from state-dict keys, a plain builder (`weights=None`) and
the registration of an architecture with its `_nc` twin.

Nothing here knows a family: each family module passes its own names, stages and key patterns.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import torchvision
from torch import nn

from .placement import family_builder
from .preprocessing import Preprocess
from .registry import ArchSpec, register_arch

__all__ = ["weights_preprocessing", "count_blocks", "check_positive", "torchvision_plain",
           "register_with_nc"]


def weights_preprocessing(arch: str, weights: str = "DEFAULT") -> tuple[Preprocess, tuple[tuple[str, Any], ...]]:
    """The preprocessing of torchvision's `weights` (an enum member name, or DEFAULT) for `arch`,
    from the enum's `transforms` (an `ImageClassification` built without reading any file), and
    what is recorded beside it: the weight set's name and its interpolation (ncviz resizes
    bilinearly; the interpolation is recorded, not applied)."""
    enum = torchvision.models.get_model_weights(arch)
    member = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    transform = member.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    preprocess = Preprocess(input_size=crop, mean=tuple(transform.mean), std=tuple(transform.std),
                            crop_pct=crop / resize)
    return preprocess, (("weights", member.name), ("interpolation", transform.interpolation.value))


def count_blocks(keys: Iterable[str], pattern: re.Pattern[str]) -> tuple[int, ...]:
    """Blocks per stage: `pattern` matches a key with groups (stage, block), both integers; the
    stages are counted in numeric order."""
    blocks: dict[int, set[int]] = {}
    for key in keys:
        match = pattern.match(key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    return tuple(len(blocks[s]) for s in sorted(blocks))


def check_positive(what: str, value: Any) -> None:
    """ValueError naming `what` unless `value` is a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def torchvision_plain(name: str) -> Callable[..., nn.Module]:
    """`plain(num_classes, stem_stride=1)`: torchvision's `name` with random weights."""
    def plain(num_classes: int, stem_stride: int = 1) -> nn.Module:
        check_positive("num_classes", num_classes)
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    return plain


def register_with_nc(name: str, family: str, stages: tuple[str, ...], plain: Callable[..., nn.Module],
                     weights: str = "DEFAULT", block_counts: tuple[int, ...] = (),
                     details: tuple[tuple[str, Any], ...] = ()) -> None:
    """Register `name` and `name_nc` (NC blocks at the input of each of `stages`), with the
    preprocessing of torchvision's `weights` for `name` as their default."""
    preprocess, recorded = weights_preprocessing(name, weights)
    for nc in (False, True):
        spec = ArchSpec(name=name + "_nc" * nc, base=name, family=family, nc=nc, preprocess=preprocess,
                        stages=stages, block_counts=block_counts, details=recorded + details)
        register_arch(spec, family_builder(plain, spec))
