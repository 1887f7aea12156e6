"""What the torchvision family modules share: default preprocessing read from torchvision's weight
enums (no download), block counting from state-dict keys, a plain builder (`weights=None`) and
the registration of an architecture with its `_nc` twin.

Nothing here knows a family: each family module passes its own names, stages and key patterns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torchvision
from torch import nn

from .placement import family_builder
from .registry import ArchSpec, register_arch

__all__ = ["Preprocessing", "weights_preprocessing", "count_blocks", "check_positive", "torchvision_plain",
           "register_with_nc"]


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation transform of one torchvision weight set: crop size, crop fraction, normalisation."""

    input_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    weights: str


def weights_preprocessing(arch: str, weights: str = "DEFAULT") -> Preprocessing:
    """The preprocessing of torchvision's `weights` (an enum member name, or DEFAULT) for `arch`,
    from the enum's `transforms` (an `ImageClassification` built without reading any file)."""
    enum = torchvision.models.get_model_weights(arch)
    member = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    transform = member.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    return Preprocessing(input_size=crop, crop_pct=crop / resize, mean=tuple(transform.mean),
                         std=tuple(transform.std), interpolation=transform.interpolation.value,
                         weights=member.name)


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
                     preprocessing: Preprocessing, block_counts: tuple[int, ...] = (),
                     details: tuple[tuple[str, Any], ...] = ()) -> None:
    """Register `name` and `name_nc` (NC blocks at the input of each of `stages`)."""
    recorded = (("weights", preprocessing.weights), ("interpolation", preprocessing.interpolation)) + details
    for nc in (False, True):
        spec = ArchSpec(name=name + "_nc" * nc, base=name, family=family, nc=nc,
                        default_input_size=preprocessing.input_size, stages=stages, mean=preprocessing.mean,
                        std=preprocessing.std, crop_pct=preprocessing.crop_pct, block_counts=block_counts,
                        details=recorded)
        register_arch(spec, family_builder(plain, spec))
