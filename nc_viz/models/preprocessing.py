"""Per-model preprocessing: `Preprocess`, the one frozen record of how an image becomes a model
input (as timm's pretrained config), and `PreprocessOverride`, the partial record the user gives
(`input_size`, `resize`, `mean`, `std`, `no_crop`) for checkpoints that carry none, or the wrong
one. An architecture's spec carries its default `Preprocess`, a checkpoint's metadata stores one,
an override is applied to it and the image loader applies the result. torch is imported only by
the methods that convert images; resizing and cropping are Pillow's, as torchvision's
`transforms.v2.functional` does them for a PIL image (the same pixels, without importing it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..core.constants import IMAGENET_MEAN, IMAGENET_STD
from ..core.errors import ParameterError

if TYPE_CHECKING:
    import torch
    from PIL import Image

MIN_SIZE = 8


def _resize(img: Image.Image, size: tuple[int, int], interpolation: int) -> Image.Image:
    """`img` at `size` (w, h); the image itself when it has that size already (as torchvision)."""
    return img if img.size == size else img.resize(size, resample=interpolation)


def _center_crop(img: Image.Image, side: int) -> Image.Image:
    """The centred side x side part of `img`, padded with black where `img` is smaller (as
    torchvision's `center_crop`: the anchor rounds half to even)."""
    from PIL import Image

    w, h = img.size
    if side > w or side > h:
        left, top = (side - w) // 2 if side > w else 0, (side - h) // 2 if side > h else 0
        right, bottom = (side - w + 1) // 2 if side > w else 0, (side - h + 1) // 2 if side > h else 0
        padded = Image.new(img.mode, (w + left + right, h + top + bottom))
        padded.paste(img, (left, top))
        img, (w, h) = padded, padded.size
        if (w, h) == (side, side):
            return img
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    return img.crop((left, top, left + side, top + side))
Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input: resize, centre crop, normalise.

    `center_crop=False` resizes the whole image to input_size x input_size instead (no crop,
    the aspect ratio is not kept).
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    center_crop: bool = True

    @property
    def resize_size(self) -> int:
        """Shorter side before the centre crop."""
        return int(round(self.input_size / self.crop_pct))

    def crop(self, img: Image.Image) -> Image.Image:
        """Resize the shorter side and centre-crop: the RGB picture the model sees."""
        from PIL import Image

        return self.geometry(img, Image.Resampling.BILINEAR)

    def geometry(self, img: Image.Image, interpolation: int) -> Image.Image:
        """Resize (and centre-crop) `img` as the model input is, with Pillow's `interpolation`
        (an `Image.Resampling`)."""
        side = self.input_size
        if not self.center_crop:
            return _resize(img, (side, side), interpolation)
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        img = _resize(img, (new_short, new_long) if w <= h else (new_long, new_short), interpolation)
        return _center_crop(img, side)

    def to_tensor(self, img: Image.Image) -> "torch.Tensor":
        """PIL image -> normalised float32 tensor (3, S, S)."""
        import torch

        arr = np.asarray(self.crop(img), dtype=np.uint8)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def to_uint8(self, x: "torch.Tensor") -> np.ndarray:
        """Undo the normalisation of (..., 3, S, S) tensors: uint8 (..., S, S, 3), what the model saw.

        A batch is converted on its device and copied to the CPU once.
        """
        import torch

        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        rgb = (x.float() * std + mean).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        return rgb.movedim(-3, -1).cpu().numpy()


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
