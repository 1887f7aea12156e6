"""`wsol`: clovaai/wsolevaluation's metadata folder (`image_ids.txt`, `class_labels.txt`,
`image_sizes.txt`, `localization.txt`), parsed as its `data_loaders.py` does.

`localization.txt` lines are `path,x0,y0,x1,y1` (a box; several lines per image) or
`path,mask.png,ignore.png` (a mask; the ignore file on the image's first line only). Images
and masks live under the image root (`images`; default: the metadata folder's parent). Given
a folder of split folders (the reference's `metadata/CUB`), `split` picks one (default test).
An image listed in `image_ids.txt` with no label, or with no box or mask in a data set that has
them, is a problem and is left out.

Paths are compared once normalised (`./a.png` is `a.png`). An id listed twice in
`image_ids.txt`, `class_labels.txt` or `image_sizes.txt` is a problem (the first line is used).
The image file is trusted over `image_sizes.txt`: the reference's boxes are in the original
image's pixels and `image_sizes.txt` is that image's (w, h), so when the file's header disagrees
the boxes' frame is unknown and the image is a problem, left out. So is an image whose mask or
ignore mask is not the image's size (the reference would resize it silently).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ._text import FirstOfEach, inside, normal, read_lines, split_fields
from .base import Dataset, ProblemLog, Sample, check_boxes, image_size
from .formats import register

REQUIRED = ("image_ids.txt", "class_labels.txt")


SPLITS = ("train", "val", "test")


def _is_split_folder(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED)


def _is_wsol(path: Path) -> bool:
    """A metadata folder, or a data set's folder of them (`metadata/CUB` with `test/` ...)."""
    return _is_split_folder(path) or any(_is_split_folder(path / s) for s in SPLITS)


@dataclass
class _Annotations:
    """What localization.txt says about one image."""

    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    box_lines: list[int] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    ignore: str = ""


@register("wsol", _is_wsol, summary="image_ids.txt + class_labels.txt (wsolevaluation metadata)", order=20)
def read_wsol(root: Path, *, problems: ProblemLog, images: Optional[Path] = None, split: str = "test",
              class_names: Optional[list[str]] = None) -> Dataset:
    """Samples of a wsolevaluation metadata folder `root` (or of its `split` sub-folder, as in
    the reference's `metadata/CUB/test`), images under `images`."""
    if not _is_split_folder(root) and _is_split_folder(root / split):
        root = root / split
    image_root = images or root.parent
    ids = _read_ids(root / "image_ids.txt", problems)
    labels = _read_keyed(root / "class_labels.txt", 1, problems)
    sizes = _read_keyed(root / "image_sizes.txt", 2, problems) if (root / "image_sizes.txt").is_file() else {}
    notes = _read_localization(root / "localization.txt", problems) if (root / "localization.txt").is_file() else {}
    samples = []
    for image_id, line in ids:
        sample = _sample(image_id, line, image_root, labels, sizes, notes, problems, root)
        if sample is not None:
            samples.append(sample)
    return Dataset("wsol", root, samples, listed=_listed(ids, notes, image_root))


def _listed(ids: list[tuple[str, int]], notes: dict[str, _Annotations], image_root: Path) -> list[Path]:
    """Every image, mask and ignore file the metadata names (kept or not)."""
    names = [i for i, _ in ids] + [n for key, note in notes.items() for n in (key, *note.masks, note.ignore)]
    return [p for p in (inside(image_root, n) for n in names) if p is not None]


def _read_ids(path: Path, problems: ProblemLog) -> list[tuple[str, int]]:
    seen = FirstOfEach()
    ids = []
    for line, text in read_lines(path, "image id list"):
        image_id = normal(text.strip())
        twice = seen.duplicate(image_id, line)
        if twice:
            problems.add(image_id, twice, path, line)
            continue
        ids.append((image_id, line))
    return ids


def _read_keyed(path: Path, count: int, problems: ProblemLog) -> dict[str, tuple[int, ...]]:
    """`id,int[,int]` lines -> {id: ints}; an id's second line is a problem (the first is used)."""
    out: dict[str, tuple[int, ...]] = {}
    seen = FirstOfEach()
    for line, fields in split_fields(read_lines(path, path.stem.replace("_", " ")), ","):
        key = normal(fields[0]) if fields else ""
        try:
            if len(fields) != count + 1:
                raise ValueError(f"expected {count + 1} comma-separated fields, got {len(fields)}")
            values = tuple(int(f) for f in fields[1:])
        except ValueError as exc:
            problems.add(key, f"unreadable line: {exc}", path, line)
            continue
        twice = seen.duplicate(key, line)
        if twice:
            problems.add(key, twice, path, line)
        else:
            out[key] = values
    return out


def _read_localization(path: Path, problems: ProblemLog) -> dict[str, _Annotations]:
    notes: dict[str, _Annotations] = {}
    for line, fields in split_fields(read_lines(path, "localization file"), ","):
        note = notes.setdefault(normal(fields[0]), _Annotations())
        if len(fields) == 5:
            try:
                note.boxes.append(tuple(float(f) for f in fields[1:]))  # type: ignore[arg-type]
                note.box_lines.append(line)
            except ValueError:
                problems.add(fields[0], f"unreadable line: box {','.join(fields[1:])!r}", path, line)
        elif len(fields) == 3 and fields[1]:
            note.masks.append(fields[1])
            note.ignore = note.ignore or fields[2]
        else:
            problems.add(normal(fields[0]), f"unreadable line: expected path,x0,y0,x1,y1 or path,mask,ignore; "
                                    f"got {len(fields)} fields", path, line)
    return notes


def _sample(image_id: str, line: int, image_root: Path, labels: dict, sizes: dict, notes: dict,
            problems: ProblemLog, root: Path) -> Optional[Sample]:
    ids_file = root / "image_ids.txt"
    path = inside(image_root, image_id)
    if image_id not in labels or path is None:
        problems.add(image_id, "no class label" if path else "image path outside the image root",
                     root / "class_labels.txt" if path else ids_file)
        return None
    if not path.is_file():
        problems.add(image_id, f"missing image: {path}", ids_file, line)
        return None
    note = notes.get(image_id)
    if notes and note is None:
        problems.add(image_id, "no box or mask in localization.txt", ids_file, line)
        return None
    if note is not None and not note.boxes and not note.masks:
        return None     # all its localization lines were unreadable: counted there
    size = tuple(sizes[image_id]) if image_id in sizes else None
    if size is not None and not _size_agrees(path, size, image_id, problems):
        return None
    if note is not None and note.boxes and size is None:
        size = image_size(path)
    boxes = np.zeros((0, 4))
    if note is not None and note.boxes:
        boxes = check_boxes(np.array(note.boxes), size, image_id, problems, root / "localization.txt",
                            note.box_lines)
        if len(boxes) == 0:
            return None
    masks = _mask_paths(note, image_root, image_id, problems, root) if note is not None and note.masks else None
    if masks == ():
        return None
    ignore = inside(image_root, note.ignore) if note is not None and note.ignore else None
    if masks and not _masks_fit(path, size, masks, ignore, image_id, problems):
        return None
    return Sample(image_id=image_id, path=path, label=int(labels[image_id][0]), boxes=boxes,
                  mask_paths=masks, ignore_path=ignore, size=size)  # type: ignore[arg-type]


def _size_agrees(path: Path, size: tuple, image_id: str, problems: ProblemLog) -> bool:
    """Whether the image file's header says `size` (an unreadable header is left to decoding)."""
    real = image_size(path)
    if real is None or real == size:
        return True
    problems.add(image_id, f"image_sizes.txt says {size[0]}x{size[1]}, the file is {real[0]}x{real[1]}", path)
    return False


def _masks_fit(path: Path, size: Optional[tuple], masks: tuple[Path, ...], ignore: Optional[Path],
               image_id: str, problems: ProblemLog) -> bool:
    """Whether every mask and the ignore mask are the image's size (headers only); each that is
    not is a problem naming its file."""
    real = size or image_size(path)
    if real is None:
        return True     # the image does not decode: counted when it is read
    fit = True
    for what, mask in [("mask", m) for m in masks] + ([("ignore mask", ignore)] if ignore is not None else []):
        found = image_size(mask)
        if found is not None and found != tuple(real):
            problems.add(image_id, f"{what} is {found[0]}x{found[1]}, image is {real[0]}x{real[1]}", mask)
            fit = False
    return fit


def _mask_paths(note: _Annotations, image_root: Path, image_id: str, problems: ProblemLog,
                root: Path) -> tuple[Path, ...]:
    """The image's mask files that exist; each missing one is a problem."""
    found = []
    for name in note.masks:
        path = inside(image_root, name)
        if path is None or not path.is_file():
            problems.add(image_id, f"missing mask: {name}", root / "localization.txt")
        else:
            found.append(path)
    return tuple(found)
