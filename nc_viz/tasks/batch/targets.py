"""A class to explain per image (`BatchOptions.targets`): a CSV file of `image,class` rows.

`image` is a path relative to the input folder as the figures mirror it (`a.png`, `sub/b.jpg`;
`./a.png` is `a.png`); `class` is a class index or a class name of the models (any case). A
first row `image,class` is a header. An image the file does not name gets the run's `target`
(default: each model's prediction). Everything is checked before any work: an image that is not
among the run's inputs, an unknown class, a row that is not two fields, an image listed twice
are each a ParameterError naming the file and the line.
"""
from __future__ import annotations

import csv
import io
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...core.errors import ParameterError
from ...core.files import read_text_file
from .plan import Job

if TYPE_CHECKING:
    import torch

__all__ = ["TargetRow", "TargetedBatch", "read_targets", "match_images", "resolve_classes", "target_tensor",
           "with_targets", "split_targets"]

HEADER = ("image", "class")
SHOWN = 3  # unknown images named in the error


@dataclass(frozen=True)
class TargetRow:
    """One row of the file: the image as written, its class as written, its line number."""

    image: str
    cls: str
    line: int


def _problem(path: str | os.PathLike, line: int, text: str) -> ParameterError:
    return ParameterError("targets", f"{path}, line {line}: {text} ({{param}})")


def read_targets(path: str | os.PathLike) -> list[TargetRow]:
    """The rows of the CSV file `path` (UTF-8, a byte-order mark allowed; blank lines skipped)."""
    text = read_text_file(path, "targets file")
    rows: list[TargetRow] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != 2:
            raise _problem(path, line, f"{len(fields)} fields; each row is image,class")
        image, cls = (f.strip() for f in fields)
        if not rows and not seen and (image.lower(), cls.lower()) == HEADER:
            seen[""] = line
            continue
        if not image or not cls:
            raise _problem(path, line, "an empty field; each row is image,class")
        key = _normal(image)
        if key in seen:
            raise _problem(path, line, f"{image} is listed twice (first on line {seen[key]})")
        seen[key] = line
        rows.append(TargetRow(image, cls, line))
    if not rows:
        raise ParameterError("targets", f"{path}: no image,class row ({{param}})")
    return rows


def _normal(image: str) -> str:
    """`./a.png`, `a.png` and `sub//a.png` name one image; backslashes are separators too."""
    return posixpath.normpath(image.replace("\\", "/")).lstrip("/") if image else image


def match_images(rows: Sequence[TargetRow], jobs: Sequence[Job], input_dir: Path,
                 path: str | os.PathLike) -> dict[int, TargetRow]:
    """Each row's job (by the job's index); a row naming no input image is an error that names
    the first few such rows and an image the run does have."""
    by_name = {_normal(job.rel_input): job for job in jobs}
    by_path = {job.source.resolve(): job for job in jobs}
    matched: dict[int, TargetRow] = {}
    unknown: list[TargetRow] = []
    for row in rows:
        job = by_name.get(_normal(row.image))
        if job is None and Path(row.image).is_absolute():
            job = by_path.get(Path(row.image).resolve())
        if job is None:
            unknown.append(row)
        else:
            matched[job.index] = row
    if unknown:
        named = "; ".join(f"line {r.line}: {r.image}" for r in unknown[:SHOWN])
        more = f"; and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        example = f" (e.g. {jobs[0].rel_input})" if jobs else ""
        raise ParameterError("targets", f"{path}: {len(unknown)} image(s) not among the inputs of {input_dir}: "
                                        f"{named}{more}; name them relative to {input_dir}{example} ({{param}})")
    return matched


def resolve_classes(matched: Mapping[int, TargetRow], parse: Callable[[str], int | None],
                    path: str | os.PathLike) -> dict[int, int]:
    """Each matched job's class index through `parse` (ModelPair.parse_target); an unknown class
    is an error naming the file and the line."""
    classes: dict[int, int] = {}
    for index, row in matched.items():
        try:
            value = parse(row.cls)
        except ParameterError as exc:
            raise _problem(path, row.line, exc.naming("class")) from None
        classes[index] = int(value) if value is not None else -1
    return classes


def target_tensor(jobs: Sequence[Job], classes: Mapping[int, int], default: int | None) -> "torch.Tensor":
    """A (len(jobs),) int64 tensor of the class of each job, in the jobs' order: its row's class,
    else `default` (None: PREDICTED, the model's prediction)."""
    import torch

    from ...cams.compute import PREDICTED

    fallback = PREDICTED if default is None else default
    return torch.tensor([classes.get(job.index, fallback) for job in jobs], dtype=torch.long)


@dataclass(frozen=True)
class TargetedBatch:
    """A batch of inputs with the class of each (sliced together, as the device loop slices a batch)."""

    x: "torch.Tensor"
    target: "torch.Tensor"

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: slice) -> "TargetedBatch":
        return TargetedBatch(self.x[index], self.target[index])


def with_targets(x: "torch.Tensor", targets: "torch.Tensor | None", positions: Sequence[int]):
    """`x` itself without per-image targets; else a TargetedBatch of x and the targets of the
    jobs at `positions` (this shard's job positions of x's rows)."""
    if targets is None:
        return x
    return TargetedBatch(x, targets[list(positions)])


def split_targets(batch: "torch.Tensor | TargetedBatch", default: int | None) -> tuple["torch.Tensor", "int | torch.Tensor | None"]:
    """(inputs, target) for ModelPair.run: the batch's own per-image targets, else `default`."""
    if isinstance(batch, TargetedBatch):
        return batch.x, batch.target
    return batch, default
