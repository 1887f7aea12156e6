"""Preprocessing given on the command line (`--input-size`, `--resize`, `--mean`, `--std`,
`--no-crop`): for checkpoints that carry none, or the wrong one. No torch here."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .inputs import Preprocess
from ..core.errors import UsageError

MIN_SIZE = 8
Triple = tuple[float, float, float]


def parse_triple(text: str, option: str, positive: bool = False) -> Triple:
    """Three comma-separated finite floats (`0.5,0.5,0.5`); `positive`: each above zero."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{option} {text}: give three comma-separated numbers, e.g. 0.5,0.5,0.5") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{option} {text}: give three comma-separated finite numbers (one per RGB channel)")
    if positive and min(values) <= 0:
        raise UsageError(f"{option} {text}: every value must be above 0")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class PreprocessOverride:
    """What the user set; every field left None keeps the checkpoint's value."""

    input_size: int | None = None
    resize: int | None = None
    mean: Triple | None = None
    std: Triple | None = None
    no_crop: bool = False

    @classmethod
    def from_options(cls, input_size: int | None = None, resize: int | None = None, mean: str | None = None,
                     std: str | None = None, no_crop: bool = False) -> PreprocessOverride | None:
        """Parse and check the options (UsageError naming the option); None when none is set."""
        override = cls(input_size, resize, parse_triple(mean, "--mean") if mean is not None else None,
                       parse_triple(std, "--std", positive=True) if std is not None else None, bool(no_crop))
        override.check()
        return override if override.given else None

    def check(self) -> None:
        """Checks that need no model."""
        for option, value in (("--input-size", self.input_size), ("--resize", self.resize)):
            if value is not None and value < MIN_SIZE:
                raise UsageError(f"{option} {value}: must be at least {MIN_SIZE}")
        if self.std is not None and min(self.std) <= 0:
            raise UsageError(f"--std {self.std}: every value must be above 0")
        if self.no_crop and self.resize is not None:
            raise UsageError("--resize and --no-crop exclude each other: --no-crop resizes the whole image "
                             "to --input-size")
        if self.resize is not None and self.input_size is not None:
            self._check_fits(self.input_size)

    def _check_fits(self, size: int) -> None:
        if self.resize is not None and self.resize < size:
            raise UsageError(f"--resize {self.resize} is smaller than the input size {size}: "
                             f"the centre crop would not fit")

    @property
    def given(self) -> list[str]:
        """The options that were set, as the command line spells them."""
        values = {"--input-size": self.input_size, "--resize": self.resize, "--mean": self.mean,
                  "--std": self.std, "--no-crop": self.no_crop or None}
        return [option for option, value in values.items() if value is not None]

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
