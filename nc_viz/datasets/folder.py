"""`folder`: one sub-folder per class (`root/<class name>/<image>`): accuracy and diversity only,
no boxes. With the models' class names (`class_names`) a folder's class is its name's index
among them (a folder that is not one of them is a problem); without, the sorted folder names
are the classes (as torchvision's ImageFolder)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..core.constants import IMAGE_SUFFIXES
from .base import Dataset, ProblemLog, Sample
from .formats import register


def _class_folders(root: Path) -> list[Path]:
    try:
        with os.scandir(root) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _is_folder(path: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for f in _class_folders(path) for p in f.rglob("*"))


@register("folder", _is_folder, fallback=True, summary="one sub-folder of images per class", order=10)
def read_folder(root: Path, *, problems: ProblemLog, images: Optional[Path] = None, split: str = "test",
                class_names: Optional[list[str]] = None) -> Dataset:
    """Samples of `root/<class>/...` images, without ground truth regions."""
    folders = _class_folders(root)
    names = list(class_names) if class_names else [f.name for f in folders]
    index = {name: i for i, name in enumerate(names)}
    samples = []
    for folder in folders:
        if folder.name not in index:
            problems.add(folder.name, "folder is not a class of the models", root)
            continue
        for path in _images_in(folder):
            samples.append(Sample(image_id=path.relative_to(root).as_posix(), path=path,
                                  label=index[folder.name]))
    return Dataset("folder", root, samples, class_names=names,
                   num_classes=None if class_names else len(names))
