"""Guards against outputs that would destroy a file. No torch here.

- no output may be a file the command reads (resolved paths and hard links compared);
- a folder run never writes into its input folder.

(Which files may be read at all, regular files only, is `core.files`.)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..core.errors import UsageError

if TYPE_CHECKING:
    from ..pair import PairSpec

# ----------------------------------------------------------------------------- outputs vs inputs


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def model_inputs(spec: PairSpec) -> list[tuple[Path, str]]:
    """The files a model pair is read from (the shipped demo pair when none is given), labelled;
    plus a class-names file when the spec carries one."""
    base, nc = spec.checkpoints()
    files = [(base, "the baseline checkpoint"), (nc, "the NC checkpoint")]
    value = spec.class_names
    if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
        files.append((Path(value), "the class-names file"))
    return files


def check_outputs_distinct(inputs: Iterable[tuple[Path, str]], outputs: Sequence[Path]) -> None:
    """Each output differs from every input and from the other outputs: by resolved path and,
    for files that exist, by (device, inode), so that a hard link is caught too."""
    by_path: dict[Path, str] = {}
    by_inode: dict[tuple[int, int], str] = {}
    for path, label in inputs:
        by_path.setdefault(path.resolve(), label)
        ident = _identity(path)
        if ident:
            by_inode.setdefault(ident, label)
    for path in outputs:
        ident = _identity(path)
        other = by_path.get(path.resolve()) or (by_inode.get(ident) if ident else None)
        if other:
            raise UsageError(f"{path}: is also {other}; give each output its own file")
        by_path[path.resolve()] = "another output"  # outputs are renamed into place: links between them are harmless


def dataset_inputs(dataset: Any) -> list[tuple[Path, str]]:
    """The files `evaluate` could read of a data set: its annotation files (the files in its root
    folder), every sample's image, masks and ignore region, and every file the annotations name
    (`Dataset.listed`), also those of images left out for an annotation problem."""
    reads: list[tuple[Path, str]] = []
    try:
        reads += [(f, "an annotation file of the data set") for f in Path(dataset.root).iterdir() if f.is_file()]
    except OSError:
        pass
    for sample in dataset.samples:
        reads.append((Path(sample.path), "an image of the data set"))
        reads += [(Path(m), "a mask of the data set") for m in sample.mask_paths or ()]
        if sample.ignore_path is not None:
            reads.append((Path(sample.ignore_path), "an ignore mask of the data set"))
    reads += [(Path(f), "a file the data set's annotations name") for f in getattr(dataset, "listed", ())]
    return reads


def check_dataset_outputs(dataset: Any, spec: PairSpec, outputs: Sequence[Path]) -> None:
    """`evaluate`: no output is a checkpoint, a file of the data set or another output."""
    check_outputs_distinct([*model_inputs(spec), *dataset_inputs(dataset)], list(outputs))


# ----------------------------------------------------------------------------- batch layout


def landing_place(path: Path) -> Path:
    """Where a write to `path` lands: its folder resolved, its own name kept (a rename
    replaces a link at `path` itself, never the file it points to)."""
    return path.parent.resolve() / path.name


def check_batch_layout(input_dir: Path, output_dir: Path, outputs: Sequence[Path],
                       reports: Sequence[str]) -> None:
    """Refuse, before any work, a folder run that would write among its inputs.

    An output folder inside the input folder is fine (nothing in it is read as an input).
    An output folder that contains the input folder is allowed as long as no planned figure
    falls inside the input folder (`ncviz batch photos -o .` is fine; `ncviz batch ov/in -o ov`,
    recursive, with a subfolder `in/in` is not: its figures would land on the inputs), and no
    planned report (summary.json, index.html) is a folder of the input.
    """
    src = input_dir.resolve()
    for name in reports:
        report = output_dir / name
        if report.is_dir():
            what = "the input folder or one of its folders" if _inside_or_above(report.resolve(), src) else "a folder"
            raise UsageError(f"{report}: is {what}; choose another -o for the {name} of this run")
    out = output_dir.resolve()
    if out != src and out.is_relative_to(src):
        return  # a subfolder of the input: its files are never read as inputs
    for path in outputs:
        if landing_place(path).is_relative_to(src):
            raise UsageError(f"{path}: this figure would be written inside the input folder {input_dir} "
                             f"(and could replace an input); choose an -o outside {input_dir}")


def _inside_or_above(a: Path, b: Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)


def check_evaluate_output(json_path: Path, spec: PairSpec, data_dir: Path) -> None:
    """The evaluation's JSON file may not be a checkpoint, nor a file of the data set it reads."""
    reads = [*model_inputs(spec), *((data_dir / name, "a file of the data set")
                                            for name in ("labels.csv", "classes.txt"))]
    check_outputs_distinct(reads, [json_path])
    for folder in ("images", "masks"):
        if landing_place(json_path).is_relative_to((data_dir / folder).resolve()):
            raise UsageError(f"{json_path}: is inside the data set's {folder}/ folder; write it elsewhere")
