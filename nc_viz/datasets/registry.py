"""Format name -> reader; `read_annotated` and `detect_format` (the `auto` format).

A reader registers itself with `formats.register(name, detect=...)` when its module is imported;
this module imports every module of the package (`load_readers`), so a reader module is found
with no other edit: `detect(path)` says whether the files that identify the layout are at `path`. `folder` has no identifying file: it is chosen by `auto`
only when no other layout matches and `path` holds sub-folders of images.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import NcVizError, ParameterError
from ..core.registry import import_modules
from .base import Dataset, ProblemLog
from .formats import READERS, register, sort_readers

__all__ = ["READERS", "register", "load_readers", "reader_names", "detect_format", "read_annotated"]


def load_readers() -> None:
    """Import every module of this package (each reader module registers its reader), then put
    the readers in the `format` choices' order (`formats.Reader.order`)."""
    import_modules(__package__, sys.modules[__package__].__path__)
    sort_readers()


load_readers()


def reader_names() -> list[str]:
    """The registered format names, the `format` choices (without `auto`)."""
    return list(READERS)


def detect_format(path: str | os.PathLike) -> str:
    """The one layout whose identifying files are at `path`; a ParameterError naming `format`
    when none or several."""
    root = Path(path)
    if not root.is_dir():
        raise ParameterError("format", f"{root}: not a folder; {{param}} auto needs a data set folder")
    found = [r.name for r in READERS.values() if not r.fallback and r.detect(root)]
    if not found:
        found = [r.name for r in READERS.values() if r.fallback and r.detect(root)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ParameterError("format", f"{root}: no known data set layout here ({_expected()}); give {{param}}")
    raise ParameterError("format", f"{root}: {{param}} auto is ambiguous: looks like {' and '.join(found)}; "
                                   f"give {{param}}")


def _expected() -> str:
    return "; ".join(f"{r.name}: {r.summary}" for r in READERS.values() if r.summary)


def read_annotated(path: str | os.PathLike, format: str = "auto", *, images: str | os.PathLike | None = None,
                   split: str = "test", class_names: Optional[Sequence[str]] = None,
                   strict: bool = False) -> Dataset:
    """Read the annotated data set at `path` in `format` (a registered name, or `auto`).

    `images`: the image root where the layout keeps images apart from annotations (`wsol`,
    `imagenet`, `cub`); `split`: CUB's `test` or `all`; `class_names`: the models' class names,
    used where a layout names its classes (`folder`, non-wnid `imagenet` names); `strict`:
    the first annotation problem raises `NcVizError` instead of being counted.

    Labels are all or nothing: in a data set where some images have a class, an image without
    one (a negative label, e.g. wsol's `-1`) is a problem and is left out, so one typo cannot
    change what every map explains. Only a data set with no label at all (`images`) has
    unlabelled samples.
    """
    root = Path(path)
    if not root.exists():
        raise NcVizError(f"{root}: no such file or folder")
    name = detect_format(root) if format == "auto" else format
    if name not in READERS:
        raise ParameterError("format", f"{{param}} {format!r}: unknown; choose auto, {', '.join(READERS)}")
    problems = ProblemLog(strict)
    dataset = READERS[name].read(root, images=Path(images) if images else None, split=split,
                                 class_names=list(class_names) if class_names else None, problems=problems)
    _drop_unlabelled_among_labelled(dataset, problems)
    dataset.problems = problems.problems
    return dataset


def _drop_unlabelled_among_labelled(dataset: Dataset, problems: ProblemLog) -> None:
    """Where some samples have a label, each one without (label < 0) is a problem and is dropped."""
    if all(s.label < 0 for s in dataset.samples):
        return
    kept = []
    for sample in dataset.samples:
        if sample.label < 0:
            problems.add(sample.image_id, f"no class label ({sample.label}) in a data set whose other "
                                          "images have one", dataset.root)
        else:
            kept.append(sample)
    dataset.samples = kept

