"""`imagenet`: ILSVRC-2012 val style: one Pascal-VOC XML file per image
(`<annotation><size><width>..</width><height>..</height></size><object><name>n01440764</name>
<bndbox><xmin>..</xmin>...`) and a folder of images.

The class index of a wnid is its position in the sorted list of the 1000 ILSVRC-2012 wnids
shipped as `imagenet_wnids.txt`, so any subset of val reads with the right indices. When the
models' class names (`class_names`) are given and are not wnids, every `name` is looked up in
them instead (this is how the XML that `ncviz make-data` writes, named by class, reads; an
ImageNet model's human-readable names do not make its data set read by name only if the XML
uses those names). An image's class is its first object's;
its boxes are those of the objects of that class. Coordinates are taken as written, as
wsolevaluation's ImageNet metadata does; an image whose file is not the XML's `<size>` is a
problem and is left out (the boxes' frame would be a guess).

Where the XML is: `path` itself, or `path/Annotations/CLS-LOC/val` (the Kaggle layout). Where
the images are: `images`, else the XML folder, `Data/CLS-LOC/val` of the Kaggle root, or an
`images` folder beside the XML folder; the first that holds the first image.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.errors import ParameterError
from ..core.constants import IMAGE_SUFFIXES
from .base import Dataset, ProblemLog, Sample, check_boxes, image_size
from .formats import register

WNID_FILE = Path(__file__).with_name("imagenet_wnids.txt")
KAGGLE_XML = Path("Annotations", "CLS-LOC", "val")
KAGGLE_IMAGES = Path("Data", "CLS-LOC", "val")


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 wnids, sorted: position = class index."""
    return tuple(WNID_FILE.read_text(encoding="ascii").split())


def _has_xml(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(e.name.lower().endswith(".xml") and e.is_file() for e in entries)
    except OSError:
        return False


def _is_imagenet(path: Path) -> bool:
    return _has_xml(path) or (path / KAGGLE_XML).is_dir()


@register("imagenet", _is_imagenet, summary="a folder of Pascal-VOC XML files (ILSVRC val)", order=30)
def read_imagenet(root: Path, *, problems: ProblemLog, images: Optional[Path] = None, split: str = "test",
                  class_names: Optional[list[str]] = None) -> Dataset:
    """Samples of the per-image XML files under `root`, images under `images`."""
    xml_dir = root / KAGGLE_XML if (root / KAGGLE_XML).is_dir() else root
    files = sorted(p for p in xml_dir.iterdir() if p.suffix.lower() == ".xml")
    if not files:
        raise ParameterError("format", f"{xml_dir}: no .xml files ({{param}} imagenet wants per-image Pascal-VOC XML)")
    image_dir = images or _find_image_dir(root, xml_dir, files[0])
    index = _class_index(class_names)
    found = _images_by_stem(image_dir)
    read = [r for r in (_sample(f, image_dir, found, index, problems) for f in files) if r is not None]
    samples = [sample for sample, _ in read]
    listed = [found[f.stem] for f in files if f.stem in found]
    if all(by_wnid for _, by_wnid in read):   # the 1000 ILSVRC classes
        return Dataset("imagenet", xml_dir, samples, num_classes=len(imagenet_wnids()), listed=listed)
    return Dataset("imagenet", xml_dir, samples, class_names=list(class_names or []), listed=listed)


def _is_wnid(name: str) -> bool:
    return len(name) == 9 and name[0] == "n" and name[1:].isdigit()


def _class_index(class_names: Optional[list[str]]) -> dict[str, int]:
    """wnid -> its ILSVRC index; a name that is not a wnid -> its index in the models' names."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    index.update({name: i for i, name in enumerate(class_names or []) if not _is_wnid(name)})
    return index


def _find_image_dir(root: Path, xml_dir: Path, first: Path) -> Path:
    candidates = [xml_dir, root / KAGGLE_IMAGES, xml_dir.parent / "images"]
    for folder in candidates:
        if _image_file(folder, first.stem) is not None:
            return folder
    raise ParameterError("images", f"{xml_dir}: no image for {first.name} in {', '.join(map(str, candidates))}; "
                                   f"give {{param}}")


def _image_file(folder: Path, stem: str) -> Optional[Path]:
    for ext in IMAGE_SUFFIXES + tuple(e.upper() for e in IMAGE_SUFFIXES):
        path = folder / (stem + ext)
        if path.is_file():
            return path
    return None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """stem -> image file of `folder`, from one directory listing (50,000 files: one scan,
    not 50,000 x extensions stat calls)."""
    found: dict[str, Path] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = Path(entry.path)
                if path.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                    found.setdefault(path.stem, path)
    except OSError:
        pass
    return found


def _sample(xml: Path, image_dir: Path, found: dict[str, Path], index: dict[str, int],
            problems: ProblemLog) -> Optional[tuple[Sample, bool]]:
    """The sample of one XML file, and whether its class was named by a wnid."""
    from ..core.files import regular_file_problem

    problem = regular_file_problem(xml, "XML file")
    if problem:
        problems.add(xml.stem, f"unreadable XML: {problem}", xml)
        return None
    try:
        tree = ET.parse(xml).getroot()
        size = (int(_text(tree, "size/width")), int(_text(tree, "size/height")))
        objects = [(_text(o, "name"), [float(_text(o, f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")])
                   for o in tree.iter("object")]
    except (ET.ParseError, ValueError, OSError) as exc:
        problems.add(xml.stem, f"unreadable XML: {exc}", xml)
        return None
    if not objects:
        problems.add(xml.stem, "unreadable XML: no <object>", xml)
        return None
    name = objects[0][0]
    if name not in index:
        problems.add(xml.stem, f"unknown class {name!r} (not an ILSVRC-2012 wnid nor a class of the models)", xml)
        return None
    path = found.get(xml.stem)
    if path is None:
        problems.add(xml.stem, f"missing image: {image_dir / xml.stem}.*", xml)
        return None
    real = image_size(path)
    if real is not None and real != size:   # the boxes' frame is unknown: the file is trusted, not <size>
        problems.add(path.name, f"<size> says {size[0]}x{size[1]}, the file is {real[0]}x{real[1]}", xml)
        return None
    boxes = check_boxes(np.array([b for n, b in objects if n == name]), size, path.name, problems, xml)
    if len(boxes) == 0:
        return None
    sample = Sample(image_id=path.relative_to(image_dir).as_posix(), path=path, label=index[name],
                    boxes=boxes, size=size)
    return sample, _is_wnid(name)


def _text(node: ET.Element, tag: str) -> str:
    found = node.find(tag)
    if found is None or found.text is None:
        raise ValueError(f"no <{tag}>")
    return found.text.strip()
