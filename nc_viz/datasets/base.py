"""What every reader of annotated data returns: samples, class names and a list of problems.

A `Sample` is one image with its class and its ground truth in ORIGINAL image pixels:
`boxes` `(n, 4)` float `x0, y0, x1, y1` in the convention of wsolevaluation's metadata:
`x1 = x0 + width` (CUB's `x + w`; the reference's boxes around a contour are `x + w` of
`cv2.boundingRect` too), and the reference's IoU then counts pixels inclusively
(`x1 - x0 + 1` wide). Masks are files (paths only; nothing is decoded here).

Bad annotations are `Problem`s: counted and listed, never a crash; with `strict=True` the first
one raises `NcVizError` naming its file and line. A box is bad when it has no extent
(`x1 <= x0` or `y1 <= y0`: nothing was drawn, although the +1 convention would give it one
pixel) or reaches outside its image (`x0 < 0`, `y0 < 0`, `x1 > w`, `y1 > h`; `x1 == w` is
allowed since CUB's `x + w` and many XML files end there). A bad box is dropped; an image
whose every box is bad is dropped (it could not be scored for localisation).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from ..core.errors import NcVizError, ParameterFailure

log = logging.getLogger(__name__)

__all__ = ["Sample", "Problem", "Dataset", "ProblemLog", "check_boxes", "check_classes",
           "boxes_at_size", "image_size", "no_boxes"]

MASK_ENCODINGS = ("binary", "instance_ids")


def no_boxes() -> np.ndarray:
    """An empty `(0, 4)` float box array."""
    return np.zeros((0, 4), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Sample:
    """One image, its class and its ground truth in original pixels.

    `mask_paths`: one file per instance (`mask_encoding="binary"`, foreground > 0, as the
    reference reads OpenImages masks), or one file whose values 1..n are the instances
    (`"instance_ids"`, ncviz's synthetic layout). `ignore_path`: the reference's ignore region.
    `size`: `(w, h)` when the annotation or the file header says so.
    """

    image_id: str
    path: Path
    label: int
    boxes: np.ndarray = field(default_factory=no_boxes)
    mask_paths: Optional[tuple[Path, ...]] = None
    ignore_path: Optional[Path] = None
    size: Optional[tuple[int, int]] = None
    mask_encoding: str = "binary"

    def same_as(self, other: "Sample") -> bool:
        """Same image file, class and boxes (for comparing the readers of one data set)."""
        return (self.path.resolve() == other.path.resolve() and self.label == other.label
                and self.boxes.shape == other.boxes.shape and bool(np.all(self.boxes == other.boxes))
                and self.size == other.size)


@dataclass(frozen=True)
class Problem:
    """One annotation that could not be used: which image, why, and where (file, line)."""

    image_id: str
    reason: str
    where: str = ""

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.image_id}: {self.reason}" if self.image_id else f"{prefix}{self.reason}"


@dataclass
class Dataset:
    """The samples of one annotated data set, as a reader found them."""

    format: str
    root: Path
    samples: list[Sample]
    class_names: Optional[list[str]] = None
    num_classes: Optional[int] = None
    problems: list[Problem] = field(default_factory=list)
    listed: list[Path] = field(default_factory=list)   # every file the annotations name (images, masks,
                                                       # ignore files), also those of images left out

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_boxes(self) -> bool:
        return any(len(s.boxes) for s in self.samples)

    @property
    def has_masks(self) -> bool:
        return any(s.mask_paths for s in self.samples)

    def problem_summary(self) -> dict[str, int]:
        """Problem counts by reason (the reason's text before any ':' detail)."""
        counts: dict[str, int] = {}
        for p in self.problems:
            key = p.reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


class ProblemLog:
    """Collects problems; in strict mode the first one raises `NcVizError`."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.problems: list[Problem] = []

    def add(self, image_id: str, reason: str, where: str | os.PathLike = "", line: int | None = None) -> None:
        place = f"{where}, line {line}" if line is not None else str(where)
        problem = Problem(image_id, reason, place)
        if self.strict:
            raise ParameterFailure("strict", f"{problem} ({{param}})")
        log.debug("annotation problem: %s", problem)
        self.problems.append(problem)


def image_size(path: Path) -> Optional[tuple[int, int]]:
    """`(w, h)` from the file header (nothing is decoded), or None when it cannot be read."""
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def check_boxes(boxes: np.ndarray, size: Optional[tuple[int, int]], image_id: str, problems: ProblemLog,
                where: str | os.PathLike = "", lines: Sequence[int | None] | None = None) -> np.ndarray:
    """The boxes that have an extent and lie inside the image; the others become problems."""
    keep = []
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        line = lines[i] if lines is not None else None
        reason = _box_fault(box, size)
        if reason:
            problems.add(image_id, reason, where, line)
        else:
            keep.append(box)
    return np.array(keep, dtype=np.float64).reshape(-1, 4)


def _box_fault(box: np.ndarray, size: Optional[tuple[int, int]]) -> str:
    x0, y0, x1, y1 = (float(v) for v in box)
    text = f"({x0:g}, {y0:g}, {x1:g}, {y1:g})"
    if not np.all(np.isfinite(box)):
        return f"box not a number: {text}"
    if x1 <= x0 or y1 <= y0:
        return f"zero-area box: {text}"
    if x0 < 0 or y0 < 0 or (size is not None and (x1 > size[0] or y1 > size[1])):
        where = f" of a {size[0]}x{size[1]} image" if size else ""
        return f"box outside its image: {text}{where}"
    return ""


def boxes_at_size(boxes: np.ndarray, size: tuple[int, int], resize: int | tuple[int, int]) -> np.ndarray:
    """Boxes of a `size` = (w, h) image after resizing it to `resize` (S, or (S_w, S_h)), no crop.

    Exactly wsolevaluation's `resize_bbox`: `int(x0 * S_w / w)`, `int(y0 * S_h / h)`, ...
    in float64, truncated toward zero. Returns an `(n, 4)` int64 array.
    """
    new_w, new_h = (resize, resize) if isinstance(resize, (int, np.integer)) else resize
    w, h = float(size[0]), float(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive (w, h), got {tuple(size)}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale_x = np.array([1.0, 0.0, 1.0, 0.0])
    new = np.where(scale_x == 1.0, b * float(new_w) / w, b * float(new_h) / h)
    return np.trunc(new).astype(np.int64)


def check_classes(dataset: Dataset, num_classes: int, class_names: Optional[Sequence[str]] = None) -> None:
    """Refuse a data set whose classes are not the models': every label below `num_classes`,
    the same class count where the data set knows it, and the same name for every class
    used where both sides have names. Raises `NcVizError` (one line)."""
    where = f"{dataset.root} ({dataset.format})"
    if dataset.num_classes is not None and dataset.num_classes != num_classes:
        raise NcVizError(f"{where}: the data has {dataset.num_classes} classes, the models {num_classes}: "
                         f"they were not trained on this data")
    names = list(class_names) if class_names else None
    seen: set[int] = set()
    for sample in dataset.samples:
        if sample.label in seen or sample.label < 0:   # -1: an image without a label (`images`)
            continue
        seen.add(sample.label)
        if not 0 <= sample.label < num_classes:
            raise NcVizError(f"{where}: label {sample.label} ({sample.image_id}) but the models have "
                             f"{num_classes} classes: they were not trained on this data")
        data_name = _name_of(dataset.class_names, sample.label)
        model_name = _name_of(names, sample.label)
        if data_name is not None and model_name is not None and model_name != data_name:
            raise NcVizError(f"{where}: class {sample.label} is {data_name!r} in the data but "
                             f"{model_name!r} in the models: they were not trained on this data")


def _name_of(names: Optional[Sequence[str]], label: int) -> Optional[str]:
    """The name of `label`, or None where unknown (no names, out of range, or an empty name)."""
    return (names[label] or None) if names is not None and 0 <= label < len(names) else None
