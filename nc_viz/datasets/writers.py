"""Write a `Dataset`'s boxes in the other layouts, so every reader can be tried offline:
wsolevaluation metadata, per-image Pascal-VOC XML, CUB-200-2011 text files.

CUB has one box per image; the CUB files written here repeat an image's id on one
`bounding_boxes.txt` line per box (the `cub` reader accepts that; real CUB has one line).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

from ..core.io import atomic_write_bytes
from ..core.errors import Param
from .base import Dataset, Sample

log = logging.getLogger(__name__)

__all__ = ["write_wsol", "write_voc_xml", "write_cub", "write_layouts"]


def _num(value: float) -> str:
    """An integral coordinate as an int (wsolevaluation parses them with int()), else a float."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _rel(sample: Sample, image_root: Path) -> str:
    return sample.path.resolve().relative_to(image_root.resolve()).as_posix()


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    atomic_write_bytes(path, "".join(f"{line}\n" for line in lines).encode())


def write_wsol(dataset: Dataset, metadata_dir: str | os.PathLike, image_root: str | os.PathLike) -> Path:
    """`image_ids.txt`, `class_labels.txt`, `image_sizes.txt`, `localization.txt` (boxes) in
    `metadata_dir`, image ids relative to `image_root`."""
    out, root = Path(metadata_dir), Path(image_root)
    ids = [_rel(s, root) for s in dataset.samples]
    _write_lines(out / "image_ids.txt", ids)
    _write_lines(out / "class_labels.txt", [f"{i},{s.label}" for i, s in zip(ids, dataset.samples)])
    _write_lines(out / "image_sizes.txt", [f"{i},{s.size[0]},{s.size[1]}" for i, s in zip(ids, dataset.samples)
                                           if s.size is not None])
    _write_lines(out / "localization.txt", [f"{i}," + ",".join(_num(v) for v in box)
                                            for i, s in zip(ids, dataset.samples) for box in s.boxes])
    return out


def write_voc_xml(dataset: Dataset, xml_dir: str | os.PathLike, class_names: Sequence[str]) -> Path:
    """One Pascal-VOC XML file per image (`<stem>.xml`), objects named by `class_names[label]`."""
    out = Path(xml_dir)
    for s in dataset.samples:
        atomic_write_bytes(out / f"{s.path.stem}.xml", _voc_xml(s, class_names[s.label]).encode())
    written = {f"{s.path.stem}.xml" for s in dataset.samples}
    stale = [p for p in out.glob("*.xml") if p.name not in written]
    if stale:
        log.warning("%s: %d XML files of an earlier data set remain; %s imagenet reads every .xml "
                    "here", out, len(stale), Param("format"))
    return out


def _voc_xml(sample: Sample, name: str) -> str:
    w, h = sample.size or (0, 0)
    objects = "".join(
        f"  <object>\n    <name>{escape(name)}</name>\n    <bndbox>\n"
        + "".join(f"      <{k}>{_num(v)}</{k}>\n" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        + "    </bndbox>\n  </object>\n" for box in sample.boxes)
    return (f"<annotation>\n  <filename>{escape(sample.path.stem)}</filename>\n"
            f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n"
            f"{objects}</annotation>\n")


def write_cub(dataset: Dataset, cub_dir: str | os.PathLike, image_root: str | os.PathLike,
              class_names: Sequence[str]) -> Path:
    """CUB-200-2011 text files in `cub_dir` (every image in the test split, classes 1-based),
    image paths relative to `image_root`."""
    out, root = Path(cub_dir), Path(image_root)
    rows = list(enumerate(dataset.samples, start=1))
    _write_lines(out / "images.txt", [f"{i} {_rel(s, root)}" for i, s in rows])
    _write_lines(out / "image_class_labels.txt", [f"{i} {s.label + 1}" for i, s in rows])
    _write_lines(out / "train_test_split.txt", [f"{i} 0" for i, _ in rows])
    _write_lines(out / "bounding_boxes.txt", [f"{i} {_num(b[0])} {_num(b[1])} {_num(b[2] - b[0])} {_num(b[3] - b[1])}"
                                              for i, s in rows for b in s.boxes])
    _write_lines(out / "classes.txt", [f"{i} {name}" for i, name in enumerate(class_names, start=1)])
    return out


def write_layouts(dataset: Dataset, root: str | os.PathLike, class_names: Sequence[str]) -> dict[str, Path]:
    """All three beside a data set written by `ncviz make-data` at `root`: `wsol/`, `xml/`, `cub/`.

    Images stay in `root/images`: read them as format `wsol` (image root `root`, the
    default), `imagenet` (finds `root/images`), or `cub` with `images` `root/images`.
    """
    base = Path(root)
    return {"wsol": write_wsol(dataset, base / "wsol", base),
            "imagenet": write_voc_xml(dataset, base / "xml", class_names),
            "cub": write_cub(dataset, base / "cub", base / "images", class_names)}
