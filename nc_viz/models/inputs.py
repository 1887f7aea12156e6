"""Image discovery, decoding and preprocessing (what the models see)."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.constants import IMAGE_SUFFIXES
from ..core.errors import ImageError
from ..core.limits import image_size_problem
from ..core.files import regular_file_problem
from .preprocessing import Preprocess

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)



def is_image_path(path: Path) -> bool:
    """True when the file name has a known image suffix (any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(directory: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in `directory` (by suffix, any case), sorted for a stable order."""
    root = Path(directory)
    candidates: Iterable[Path] = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in candidates if p.is_file() and is_image_path(p))


def _to_8bit_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16/32-bit scaled, transparency over white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if img.mode in ("I", "F") and arr.max() <= 255:
            top = 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | os.PathLike, exif: bool = True) -> Image.Image:
    """Decode an image file to 8-bit RGB with its EXIF orientation applied (`exif=False`: as
    stored, which is how clovaai/wsolevaluation reads images and sizes its boxes).

    Raises ImageError (one line naming the file) for anything that does not decode,
    including decompression bombs.
    """
    path = Path(path)
    problem = regular_file_problem(path, "regular file")  # a FIFO would block the decoder forever
    if problem:
        raise ImageError(f"{path}: {problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                too_large = image_size_problem(*img.size)  # from the header, before decoding
                if too_large:
                    raise ImageError(f"{path}: {too_large}")
                img.load()
                if exif:
                    img = ImageOps.exif_transpose(img)
                return _to_8bit_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused, image too large (decompression bomb): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image file that can be decoded") from exc
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from exc


TINY_UPSCALE = 2.0
"""An input whose shorter side is enlarged more than this many times is warned about."""


class TinyInputWarning:
    """Warns once per run about an input enlarged more than TINY_UPSCALE times to the model's size."""

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess
        self.warned = False

    def check(self, path: Path, size: tuple[int, int]) -> None:
        """`size` is the decoded image's (width, height)."""
        factor = self.preprocess.resize_size / max(1, min(size))
        if self.warned or factor <= TINY_UPSCALE:
            return
        self.warned = True
        log.warning("%s is %dx%d px: upscaled %.1fx to the model's %d px input, so its maps show "
                    "interpolation more than detail (said once per run)", path, size[0], size[1], factor,
                    self.preprocess.input_size)


def load_batch(paths: Sequence[Path], preprocess: Preprocess,
               tiny: TinyInputWarning | None = None) -> "torch.Tensor":
    """Decode and preprocess images into one (N, 3, S, S) tensor (raises on the first bad file).

    `tiny` warns (once) about an image far smaller than the model's input."""
    import torch

    tensors = []
    for path in paths:
        image = load_image(path)
        if tiny is not None:
            tiny.check(path, image.size)
        tensors.append(preprocess.to_tensor(image))
    return torch.stack(tensors)
