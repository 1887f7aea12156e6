"""Ground-truth masks of a `Sample` at its original size, for both encodings.

`binary` files (wsolevaluation's OpenImages layout): one file per instance, read as grayscale
like the reference (`cv2.IMREAD_GRAYSCALE`), foreground where > 0.5, i.e. any non-zero value.
`instance_ids` (ncviz's synthetic layout): one file, instance i where the value is i; one plane
per distinct positive value, in increasing order (the work is bounded by the values present, not by
the largest: a lone pixel at 65535 is one instance, not 65535 planes), so ids 1..n give planes 1..n
and a value that no pixel holds is no instance.
The ignore region is the reference's: the ignore file's pixels that are not foreground.
Masks of one image that differ in size are an `NcVizError` naming the file (never a numpy message).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..core.errors import NcVizError
from .base import Sample

__all__ = ["read_instance_masks", "read_ignore_mask"]


def open_mask(path: Path, *, single_channel: bool = False) -> np.ndarray:
    """A mask file as a 2-D array: only regular files, the header's pixel count checked before
    decoding (NCVIZ_MAX_IMAGE_PIXELS), every failure an `NcVizError` naming the file.
    `single_channel`: an instance-id mask must be one channel (an RGB file is refused, not greyed)."""
    from ..core.limits import image_size_problem
    from ..core.files import regular_file_problem

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


def _size_text(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def instance_planes(ids: np.ndarray) -> np.ndarray:
    """`(n, H, W)` bool, one plane per distinct positive value of `ids`, in increasing order
    (0 is the background; a negative value of a 32-bit mask is no instance, as before).

    The values are relabelled to 0..k-1 first (`np.unique(..., return_inverse=True)`), so the
    planes' memory is n x H x W however large the values are."""
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(ids.shape)
    instances = np.flatnonzero(values > 0).astype(inverse.dtype)
    return inverse[None] == instances[:, None, None]


def read_instance_masks(sample: Sample) -> np.ndarray:
    """`(n, H, W)` bool, one plane per instance; `(0, H, W)`-like empty when the sample has none."""
    if not sample.mask_paths:
        w, h = sample.size or (0, 0)
        return np.zeros((0, h, w), dtype=bool)
    if sample.mask_encoding == "instance_ids":
        return instance_planes(open_mask(sample.mask_paths[0], single_channel=True))
    planes = [_grey(p) > 0 for p in sample.mask_paths]
    for path, plane in zip(sample.mask_paths[1:], planes[1:]):
        if plane.shape != planes[0].shape:
            raise NcVizError(f"{path}: mask is {_size_text(plane.shape)}, "
                             f"{sample.mask_paths[0].name} is {_size_text(planes[0].shape)}")
    return np.stack(planes)


def read_ignore_mask(sample: Sample, foreground: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """`(H, W)` bool ignore region minus the foreground (the reference's `get_mask`), or None."""
    if sample.ignore_path is None:
        return None
    ignore = _grey(sample.ignore_path) > 0
    fg = read_instance_masks(sample).any(axis=0) if foreground is None else foreground
    if ignore.shape != fg.shape:
        raise NcVizError(f"{sample.ignore_path}: ignore mask is {_size_text(ignore.shape)}, "
                         f"the masks are {_size_text(fg.shape)}")
    return ignore & ~fg
