"""`cub`: a CUB_200_2011 root: `images.txt` (`id path`), `image_class_labels.txt` (`id class`,
1-based), `bounding_boxes.txt` (`id x y w h`, floats; several lines of one id are several boxes), `train_test_split.txt`
(`id is_training`), optionally `classes.txt` (`class name`). Images under `images/` (or
`images`). A box is `(x, y, x + w, y + h)`, as wsolevaluation's CUB metadata writes it.
Split `test` (default) keeps `is_training == 0`, `train` keeps 1, `all` keeps every image.
An id listed twice in `images.txt`, `image_class_labels.txt` or `train_test_split.txt` is a
problem (the first line is used), and so is an image path listed under two ids (paths are
compared normalised: `./a.jpg` is `a.jpg`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..core.errors import ParameterError
from ._text import FirstOfEach, inside, normal, read_lines, split_fields
from .base import Dataset, ProblemLog, Sample, check_boxes, image_size
from .formats import register

SPLITS = {"test": "0", "train": "1", "all": None}


def _is_cub(path: Path) -> bool:
    return (path / "images.txt").is_file() and (path / "image_class_labels.txt").is_file()


@register("cub", _is_cub, summary="images.txt + image_class_labels.txt (CUB_200_2011)", order=40)
def read_cub(root: Path, *, problems: ProblemLog, images: Optional[Path] = None, split: str = "test",
             class_names: Optional[list[str]] = None) -> Dataset:
    """Samples of the CUB-200-2011 root `root` in `split` (`test`, `train` or `all`)."""
    if split not in SPLITS:
        raise ParameterError("split", f"{{param}} {split!r}: choose one of {', '.join(SPLITS)} "
                                      f"for {{param:format}} cub")
    image_root = images or root / "images"
    paths = _by_id(root / "images.txt", 1, problems)
    labels = _by_id(root / "image_class_labels.txt", 1, problems)
    boxes = _all_by_id(root / "bounding_boxes.txt", 4, problems) if (root / "bounding_boxes.txt").is_file() else {}
    wanted = SPLITS[split]
    splits = _by_id(root / "train_test_split.txt", 1, problems) if wanted is not None else {}
    samples = []
    listed = FirstOfEach()
    for image_id, (fields, line) in paths.items():
        rel = normal(fields[0])
        if wanted is not None and (splits.get(image_id, ([None], 0))[0][0] != wanted):
            if image_id not in splits:
                problems.add(rel, "not in train_test_split.txt", root / "images.txt", line)
            continue
        twice = listed.duplicate(rel, line)
        if twice:
            problems.add(rel, twice, root / "images.txt", line)
            continue
        sample = _sample(image_id, rel, line, image_root, labels, boxes, problems, root)
        if sample is not None:
            samples.append(sample)
    names = _class_names(root / "classes.txt")
    listed = [p for rel, _ in paths.values() if (p := inside(image_root, rel[0])) is not None]
    return Dataset("cub", root, samples, class_names=names, num_classes=len(names) if names else None,
                   listed=listed)


def _by_id(path: Path, count: int, problems: ProblemLog) -> dict[str, tuple[list[str], int]]:
    """`id field...` lines -> {id: (fields, line)}; lines with the wrong field count are problems,
    and so is an id's second line (the first is used)."""
    out = {}
    for key, found in _all_by_id(path, count, problems).items():
        out[key] = found[0]
        for _, line in found[1:]:
            problems.add(key, f"listed twice: line {found[0][1]}'s is used", path, line)
    return out


def _all_by_id(path: Path, count: int, problems: ProblemLog) -> dict[str, list[tuple[list[str], int]]]:
    """Like `_by_id`, keeping every line of an id (several boxes per image)."""
    out: dict[str, list[tuple[list[str], int]]] = {}
    for line, fields in split_fields(read_lines(path, path.name), None):
        if len(fields) != count + 1:
            problems.add(fields[0], f"unreadable line: expected {count + 1} fields, got {len(fields)}", path, line)
        else:
            out.setdefault(fields[0], []).append((fields[1:], line))
    return out


def _sample(image_id: str, rel: str, line: int, image_root: Path, labels: dict, boxes: dict,
            problems: ProblemLog, root: Path) -> Optional[Sample]:
    path = inside(image_root, rel)
    label = _label(image_id, rel, labels, problems, root)
    if label is None:
        return None
    if path is None or not path.is_file():
        problems.add(rel, f"missing image: {image_root / rel}", root / "images.txt", line)
        return None
    size = image_size(path)
    box = np.zeros((0, 4))
    if boxes:
        box = _box(image_id, rel, boxes, size, problems, root)
        if box is None:
            return None
    return Sample(image_id=rel, path=path, label=label, boxes=box, size=size)


def _label(image_id: str, rel: str, labels: dict, problems: ProblemLog, root: Path) -> Optional[int]:
    path = root / "image_class_labels.txt"
    if image_id not in labels:
        problems.add(rel, "no class label", path)
        return None
    text, line = labels[image_id]
    try:
        value = int(text[0]) - 1
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        problems.add(rel, f"unreadable line: class {text[0]!r} is not a 1-based integer", path, line)
        return None


def _box(image_id: str, rel: str, boxes: dict, size, problems: ProblemLog, root: Path) -> Optional[np.ndarray]:
    path = root / "bounding_boxes.txt"
    if image_id not in boxes:
        problems.add(rel, "no box", path)
        return None
    found, lines = [], []
    for fields, line in boxes[image_id]:
        try:
            x, y, w, h = (float(f) for f in fields)
        except ValueError:
            problems.add(rel, f"unreadable line: box {' '.join(fields)!r}", path, line)
            continue
        found.append([x, y, x + w, y + h])
        lines.append(line)
    kept = check_boxes(np.array(found).reshape(-1, 4), size, rel, problems, path, lines)
    return kept if len(kept) else None


def _class_names(path: Path) -> Optional[list[str]]:
    """`classes.txt` (`1 001.Black_footed_Albatross`) -> names in class order, if present."""
    if not path.is_file():
        return None
    return [text.split(None, 1)[1].strip() if len(text.split(None, 1)) == 2 else text.strip()
            for _, text in read_lines(path, "class names file")]
