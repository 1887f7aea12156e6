"""What the torchvision family modules share: default preprocessing (a `Preprocess`) of
torchvision's weight sets (`Weights`, the values its weight enums give, no download), block
counting from state-dict keys, a plain builder (`weights=None`) and the registration of an
architecture with its `_nc` twin.

Nothing here knows a family: each family module passes its own names, stages and key patterns.
torchvision is imported only when a model is built or a weight enum read (`weights_preprocessing`,
which the tests compare every `Weights` record with): registering costs no torchvision import.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from torch import nn

from ..core.constants import IMAGENET_MEAN, IMAGENET_STD
from .placement import family_builder
from .preprocessing import Preprocess
from .registry import ArchSpec, register_arch

__all__ = ["Weights", "weights_preprocessing", "count_blocks", "check_positive", "torchvision_plain",
           "register_with_nc"]


@dataclass(frozen=True)
class Weights:
    """One torchvision weight set's preprocessing, as its enum's `transforms()` gives it: the
    member's name, crop and resize sides, interpolation, mean and std."""

    name: str
    crop: int
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def preprocess(self) -> tuple[Preprocess, tuple[tuple[str, Any], ...]]:
        """As `weights_preprocessing`: the `Preprocess` and what is recorded beside it."""
        preprocess = Preprocess(input_size=self.crop, mean=tuple(self.mean), std=tuple(self.std),
                                crop_pct=self.crop / self.resize)
        return preprocess, (("weights", self.name), ("interpolation", self.interpolation))


def weights_preprocessing(arch: str, weights: str = "DEFAULT") -> tuple[Preprocess, tuple[tuple[str, Any], ...]]:
    """The preprocessing of torchvision's `weights` (an enum member name, or DEFAULT) for `arch`,
    from the enum's `transforms` (an `ImageClassification` built without reading any file), and
    what is recorded beside it: the weight set's name and its interpolation (ncviz resizes
    bilinearly; the interpolation is recorded, not applied)."""
    import torchvision

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
        import torchvision

        check_positive("num_classes", num_classes)
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    return plain


def register_with_nc(name: str, family: str, stages: tuple[str, ...], plain: Callable[..., nn.Module],
                     weights: Weights, block_counts: tuple[int, ...] = (),
                     details: tuple[tuple[str, Any], ...] = ()) -> None:
    """Register `name` and `name_nc` (NC blocks at the input of each of `stages`), with the
    preprocessing of torchvision's `weights` for `name` as their default."""
    preprocess, recorded = weights.preprocess()
    for nc in (False, True):
        spec = ArchSpec(name=name + "_nc" * nc, base=name, family=family, nc=nc, preprocess=preprocess,
                        stages=stages, block_counts=block_counts, details=recorded + details)
        register_arch(spec, family_builder(plain, spec))
