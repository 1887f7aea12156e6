"""Preprocessing the user gives (`input_size`, `resize`, `mean`, `std`, `no_crop`): for
checkpoints that carry none, or the wrong one. No torch here."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .inputs import Preprocess
from ..core.errors import ParameterError

MIN_SIZE = 8
Triple = tuple[float, float, float]


def parse_triple(text: str, param: str, positive: bool = False) -> Triple:
    """Three comma-separated finite floats (`0.5,0.5,0.5`); `positive`: each above zero.
    A ParameterError names `param` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ParameterError(param, f"{{param}} {text}: give three comma-separated numbers, e.g. 0.5,0.5,0.5") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ParameterError(param, f"{{param}} {text}: give three comma-separated finite numbers "
                                    f"(one per RGB channel)")
    if positive and min(values) <= 0:
        raise ParameterError(param, f"{{param}} {text}: every value must be above 0")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class PreprocessOverride:
    """What the user set; every field left None keeps the checkpoint's value. `namer` spells a
    parameter's name in `given` (the CLI's gives its flag)."""

    input_size: int | None = None
    resize: int | None = None
    mean: Triple | None = None
    std: Triple | None = None
    no_crop: bool = False
    namer: Callable[[str], str] = field(default=str, compare=False, repr=False)

    @classmethod
    def from_options(cls, input_size: int | None = None, resize: int | None = None, mean: str | None = None,
                     std: str | None = None, no_crop: bool = False,
                     namer: Callable[[str], str] = str) -> PreprocessOverride | None:
        """Parse and check the options (ParameterError naming the parameter); None when none is set."""
        override = cls(input_size, resize, parse_triple(mean, "mean") if mean is not None else None,
                       parse_triple(std, "std", positive=True) if std is not None else None, bool(no_crop), namer)
        override.check()
        return override if override.given else None

    def check(self) -> None:
        """Checks that need no model."""
        for param, value in (("input_size", self.input_size), ("resize", self.resize)):
            if value is not None and value < MIN_SIZE:
                raise ParameterError(param, f"{{param}} {value}: must be at least {MIN_SIZE}")
        if self.std is not None and min(self.std) <= 0:
            raise ParameterError("std", f"{{param}} {self.std}: every value must be above 0")
        if self.no_crop and self.resize is not None:
            raise ParameterError("resize", "{param} and {param:no_crop} exclude each other: {param:no_crop} "
                                 "resizes the whole image to {param:input_size}")
        if self.resize is not None and self.input_size is not None:
            self._check_fits(self.input_size)

    def _check_fits(self, size: int) -> None:
        if self.resize is not None and self.resize < size:
            raise ParameterError("resize", f"{{param}} {self.resize} is smaller than the input size {size}: "
                                 f"the centre crop would not fit")

    @property
    def given(self) -> list[str]:
        """The parameters that were set, each spelled by `namer`."""
        values = {"input_size": self.input_size, "resize": self.resize, "mean": self.mean,
                  "std": self.std, "no_crop": self.no_crop or None}
        return [self.namer(param) for param, value in values.items() if value is not None]

    def apply(self, base: Preprocess) -> Preprocess:
        """`base` (the checkpoint's preprocessing) with the options set here."""
        size = self.input_size or base.input_size
        self._check_fits(size)
        crop_pct = size / self.resize if self.resize else base.crop_pct
        return replace(base, input_size=size, crop_pct=crop_pct, mean=self.mean or base.mean,
                       std=self.std or base.std, center_crop=base.center_crop and not self.no_crop)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the options that were set."""
        values = {"input_size": self.input_size, "resize": self.resize, "mean": self.mean, "std": self.std,
                  "no_crop": self.no_crop or None}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items() if v is not None}
