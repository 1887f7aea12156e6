"""`ncviz`: the synthetic layout written by `ncviz make-data` (labels.csv, images/, masks/,
classes.txt). Boxes are the bounding boxes of the instance masks with `x1 = last column + 1`,
`y1 = last row + 1`: the convention of CUB's `x + w` in wsolevaluation's metadata and of the
boxes the reference draws around a contour (`x + w` of `cv2.boundingRect`), so a map that is
exactly the mask scores IoU 1. They equal `synth.Sample.boxes`."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.errors import NcVizError
from .synth import LABELS_HEADER
from ._text import FirstOfEach, inside, normal, read_lines
from .base import Dataset, ProblemLog, Sample, check_boxes, image_size
from .masks import open_mask
from .formats import register

LABELS_FILE = "labels.csv"


def _is_ncviz(path: Path) -> bool:
    return (path / LABELS_FILE).is_file()


@register("ncviz", _is_ncviz, summary="labels.csv (ncviz make-data)", order=10)
def read_ncviz(root: Path, *, problems: ProblemLog, images: Optional[Path] = None, split: str = "test",
               class_names: Optional[list[str]] = None) -> Dataset:
    """Samples of a data set written by `ncviz make-data`, with boxes from its instance masks."""
    path = root / LABELS_FILE
    lines = read_lines(path, "labels file")
    header = next(csv.reader([lines[0][1]])) if lines else []
    if tuple(c.strip() for c in header) != LABELS_HEADER:
        from ..core.errors import NcVizError

        raise NcVizError(f"{path}, line 1: bad header {','.join(header)!r}, expected {','.join(LABELS_HEADER)!r}")
    names = _read_class_names(root / "classes.txt")
    seen_names: dict[int, str] = {}
    samples = []
    listed = FirstOfEach()
    for line, text in lines[1:]:
        sample = _sample_of_row(root, next(csv.reader([text])), names, seen_names, problems, path, line)
        twice = listed.duplicate(sample.image_id, line) if sample is not None else ""
        if twice:
            problems.add(sample.image_id, twice, path, line)
        elif sample is not None:
            samples.append(sample)
    if names is None and seen_names:
        names = [seen_names.get(i, "") for i in range(max(seen_names) + 1)]
    return Dataset("ncviz", root, samples, class_names=names,
                   num_classes=len(names) if (root / "classes.txt").is_file() and names else None,
                   listed=_listed(root, lines[1:]))


def _listed(root: Path, lines: list[tuple[int, str]]) -> list[Path]:
    """Every image labels.csv names and its mask (kept or not)."""
    files = [row[0].strip() for row in (next(csv.reader([text]), []) for _, text in lines) if row]
    images = [p for p in (inside(root, f) for f in files) if p is not None]
    return images + [root / "masks" / p.name for p in images]


def _read_class_names(path: Path) -> Optional[list[str]]:
    if not path.is_file():
        return None
    return [text.strip() for _, text in read_lines(path, "class names file")]


def _sample_of_row(root: Path, row: list[str], names: Optional[list[str]], seen: dict[int, str],
                   problems: ProblemLog, path: Path, line: int) -> Optional[Sample]:
    if len(row) != len(LABELS_HEADER):
        problems.add("", f"unreadable line: expected {len(LABELS_HEADER)} fields, got {len(row)}", path, line)
        return None
    file, label_text, class_name, instances_text = (c.strip() for c in row)
    file = normal(file)
    try:
        label, instances = int(label_text), int(instances_text)
    except ValueError:
        problems.add(file, f"unreadable line: label and instances must be integers, got "
                           f"{label_text!r} and {instances_text!r}", path, line)
        return None
    image = inside(root, file)
    if image is None or label < 0 or instances < 1:
        problems.add(file, "unreadable line: bad record " + repr(",".join(row)), path, line)
        return None
    if names is not None and (label >= len(names) or names[label] != class_name):
        problems.add(file, f"class name {class_name!r} is not class {label} of classes.txt", path, line)
        return None
    seen.setdefault(label, class_name)
    if not image.is_file():
        problems.add(file, f"missing image: {image}", path, line)
        return None
    mask_path = root / "masks" / image.name
    boxes, size = _mask_boxes(mask_path, instances, file, problems, path, line)
    if boxes is None:
        return None
    real = image_size(image)
    if real is not None and real != size:
        problems.add(file, f"mask is {size[0]}x{size[1]}, image is {real[0]}x{real[1]}", mask_path)
        return None
    return Sample(image_id=file, path=image, label=label, boxes=boxes, mask_paths=(mask_path,),
                  size=size, mask_encoding="instance_ids")


def _mask_boxes(mask_path: Path, instances: int, image_id: str, problems: ProblemLog, path: Path,
                line: int) -> tuple[Optional[np.ndarray], Optional[tuple[int, int]]]:
    """Bounding boxes (`x1`, `y1` one past the last pixel) of instances 1..n of an instance-id mask, and its (w, h).

    The work is bounded by the values the mask holds, not by `instances` nor the largest value;
    the instances with no pixel are one problem."""
    try:
        ids = open_mask(mask_path, single_channel=True)
    except NcVizError as exc:
        problems.add(image_id, f"missing or unreadable mask: {exc}", path, line)
        return None, None
    size = (int(ids.shape[1]), int(ids.shape[0]))
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(ids.shape)
    present = {int(v): k for k, v in enumerate(values.tolist()) if 1 <= int(v) <= instances}
    boxes = []
    for value in sorted(present):
        ys, xs = np.nonzero(inverse == present[value])
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    if len(present) < instances:
        problems.add(image_id, f"zero-area box: {_missing(present, instances)} in {mask_path.name}", path, line)
    kept = check_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), size, image_id, problems, path,
                       [line] * len(boxes))
    if len(kept) == 0:
        return None, None
    return kept, size


def _missing(present: dict[int, int], instances: int, shown: int = 5) -> str:
    """`instance 2 has no pixel`, or `instances 2, 5, ... (N in all) have no pixel`: the first
    few of 1..`instances` that are not `present`, found in at most len(present) + `shown` steps."""
    first: list[int] = []
    value = 1
    while value <= instances and len(first) < shown:
        if value not in present:
            first.append(value)
        value += 1
    count = instances - len(present)
    if count == 1:
        return f"instance {first[0]} has no pixel"
    more = f", ... ({count} in all)" if count > len(first) else ""
    return f"instances {', '.join(map(str, first))}{more} have no pixel"
