"""Planning: which files, in which order, and the name of each figure (see `nc_viz.tasks.batch`)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...models.inputs import find_images
from ...core.errors import NcVizError, UsageError


@dataclass(frozen=True)
class Job:
    """One input image: its place in the sorted list and where its figure goes."""

    index: int
    source: Path
    output: Path
    rel_input: str
    rel_output: str


def discover(input_dir: Path, output_dir: Path, recursive: bool) -> list[Path]:
    """Sorted image files of `input_dir`, without anything inside `output_dir`."""
    if not input_dir.is_dir():
        raise NcVizError(f"{input_dir}: not a folder")
    out, src = output_dir.resolve(), input_dir.resolve()
    if out == src:
        raise UsageError(f"-o {output_dir}: the output folder must differ from the input folder")
    files = find_images(input_dir, recursive)
    if not out.is_relative_to(src):
        return files
    return [p for p in files if not p.resolve().is_relative_to(out)]


def output_names(rel_inputs: Sequence[Path], suffix: str = ".png") -> list[Path]:
    """Relative output paths ending in `suffix` (see the module docstring for the collision rule)."""
    plain = [rel.with_name(rel.stem + suffix) for rel in rel_inputs]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name.as_posix().lower()] = counts.get(name.as_posix().lower(), 0) + 1
    names = [rel.with_name(rel.name + suffix) if counts[p.as_posix().lower()] > 1 else p
             for rel, p in zip(rel_inputs, plain)]
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 1
        while candidate.as_posix().lower() in taken:
            n += 1
            candidate = name.with_name(f"{name.stem}-{n}{suffix}")
        taken.add(candidate.as_posix().lower())
        unique.append(candidate)
    return unique


def plan_jobs(files: Sequence[Path], input_dir: Path, output_dir: Path, fmt: str = "png") -> list[Job]:
    """A Job per file, in sorted order, with collision-free output names (`<stem>.<fmt>`)."""
    rels = [f.relative_to(input_dir) for f in files]
    return [Job(i, f, output_dir / out, rel.as_posix(), out.as_posix())
            for i, (f, rel, out) in enumerate(zip(files, rels, output_names(rels, f".{fmt}")))]
