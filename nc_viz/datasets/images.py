"""`images`: a plain folder of images with no labels (`root/**/<image>`): no class, no boxes.
Only what needs no ground truth can be scored (faithfulness, diversity); `evaluate` explains
each model's predicted class. Detected by `auto` only as the last resort: a folder whose images
lie directly in it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.constants import IMAGE_SUFFIXES
from .base import Dataset, ProblemLog, Sample
from .formats import register

UNLABELED = -1
"""The label of an image without one."""


def _has_loose_images(root: Path) -> bool:
    try:
        return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in root.iterdir())
    except OSError:
        return False


@register("images", _has_loose_images, fallback=True, summary="a plain folder of unlabelled images", order=20)
def read_images(root: Path, *, problems: ProblemLog, images: Optional[Path] = None, split: str = "test",
                class_names: Optional[list[str]] = None) -> Dataset:
    """Every image file under `root` (sorted), label -1."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    samples = [Sample(image_id=p.relative_to(root).as_posix(), path=p, label=UNLABELED) for p in paths]
    return Dataset("images", root, samples, class_names=list(class_names) if class_names else None)
