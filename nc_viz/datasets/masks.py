"""Ground-truth masks of a `Sample` at its original size, for both encodings.

`binary` files (wsolevaluation's OpenImages layout): one file per instance, read as grayscale
like the reference (`cv2.IMREAD_GRAYSCALE`), foreground where > 0.5, i.e. any non-zero value.
`instance_ids` (ncviz's synthetic layout): one file, instance i where the value is i.
The ignore region is the reference's: the ignore file's pixels that are not foreground.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import NcVizError
from .base import Sample

__all__ = ["read_instance_masks", "read_ignore_mask"]


def open_mask(path: Path, *, single_channel: bool = False) -> np.ndarray:
    """A mask file as a 2-D array: only regular files, the header's pixel count checked before
    decoding (NCVIZ_MAX_IMAGE_PIXELS), every failure an `NcVizError` naming the file.
    `single_channel`: an instance-id mask must be one channel (an RGB file is refused, not greyed)."""
    from ..limits import image_size_problem
    from ..safety import regular_file_problem

    problem = regular_file_problem(path, "mask file")
    if problem:
        raise NcVizError(f"{path}: {problem}")
    try:
        with Image.open(path) as im:
            too_large = image_size_problem(*im.size)
            if too_large:
                raise NcVizError(f"{path}: {too_large}")
            if single_channel and im.mode not in ("L", "P", "I", "I;16", "1"):
                raise NcVizError(f"{path}: an instance-id mask must have one channel, this one is {im.mode}")
            return np.asarray(im.convert("L") if im.mode not in ("L", "P", "I", "I;16") else im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise NcVizError(f"{path}: cannot read mask: {exc}") from None


def _grey(path: Path) -> np.ndarray:
    return open_mask(path)


def read_instance_masks(sample: Sample) -> np.ndarray:
    """`(n, H, W)` bool, one plane per instance; `(0, H, W)`-like empty when the sample has none."""
    if not sample.mask_paths:
        w, h = sample.size or (0, 0)
        return np.zeros((0, h, w), dtype=bool)
    if sample.mask_encoding == "instance_ids":
        ids = open_mask(sample.mask_paths[0], single_channel=True)
        return ids[None] == np.arange(1, int(ids.max()) + 1, dtype=ids.dtype)[:, None, None]
    return np.stack([_grey(p) > 0 for p in sample.mask_paths])


def read_ignore_mask(sample: Sample, foreground: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """`(H, W)` bool ignore region minus the foreground (the reference's `get_mask`), or None."""
    if sample.ignore_path is None:
        return None
    ignore = _grey(sample.ignore_path) > 0
    fg = read_instance_masks(sample).any(axis=0) if foreground is None else foreground
    return ignore & ~fg
