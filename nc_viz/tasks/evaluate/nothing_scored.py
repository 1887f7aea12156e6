"""When `evaluate` scores no image at all: an error that names the first problems and the classes
the models know, and a report folder that lists every problem (so the error's "listed in the
report" is true)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ...core.io import atomic_write_bytes
from ...datasets import Dataset

__all__ = ["nothing_scored_message", "write_problem_report", "FIRST_PROBLEMS", "SHOWN_CLASSES"]

FIRST_PROBLEMS = 3   # problems named in the error line
SHOWN_CLASSES = 12   # class names named in the error line


def _problem_lines(dataset: Dataset, failed: Sequence[tuple[str, str]]) -> list[str]:
    """Each problem as `image: reason` (its file and line where that is not the data set's root),
    then each image that failed as `image: reason`."""
    lines = []
    for problem in dataset.problems:
        where = f"{problem.where}: " if problem.where and Path(problem.where) != Path(dataset.root) else ""
        lines.append(f"{where}{problem.image_id}: {problem.reason}" if problem.image_id else f"{where}{problem.reason}")
    return lines + [f"{image_id}: {reason}" for image_id, reason in failed]


def _classes(class_names: Sequence[str] | None, num_classes: int) -> str:
    if not class_names:
        return f"the models have {num_classes} classes, 0..{num_classes - 1}"
    shown = ", ".join(class_names[:SHOWN_CLASSES])
    more = f", ... ({len(class_names)} in all)" if len(class_names) > SHOWN_CLASSES else ""
    return f"the models' classes: {shown}{more}"


def nothing_scored_message(data_dir: str | os.PathLike, dataset: Dataset, failed: Sequence[tuple[str, str]],
                           class_names: Sequence[str] | None, num_classes: int,
                           report: Path | None = None) -> str:
    """One line: no image scored, the first problems, the classes the models expected, and where
    the full list is."""
    lines = _problem_lines(dataset, failed)
    first = "; ".join(lines[:FIRST_PROBLEMS]) + (f"; and {len(lines) - FIRST_PROBLEMS} more"
                                                 if len(lines) > FIRST_PROBLEMS else "")
    counts = f"{len(failed)} failed, {len(dataset.problems)} annotation problems"
    listed = f"; all listed in {report / 'report.md'}" if report is not None and lines else ""
    return (f"{data_dir}: no image could be scored ({counts})" + (f": {first}" if first else "")
            + f"; {_classes(class_names, num_classes)}{listed}")


def write_problem_report(folder: Path, data_dir: str | os.PathLike, dataset: Dataset,
                         failed: Sequence[tuple[str, str]], class_names: Sequence[str] | None,
                         num_classes: int) -> list[Path]:
    """report.md and report.json of a run that scored nothing: the data set, the models' classes
    and every problem. Returns the paths written."""
    lines = _problem_lines(dataset, failed)
    data = {"path": str(data_dir), "format": dataset.format, "images": len(dataset), "scored": 0,
            "problems": len(dataset.problems), "problem_list": [str(p) for p in dataset.problems],
            "problem_counts": dataset.problem_summary(), "failed": [list(f) for f in failed],
            "model_classes": list(class_names) if class_names else None, "model_num_classes": num_classes}
    text = json.dumps({"data": data, "images": 0}, indent=2, sort_keys=True) + "\n"
    md = [f"# ncviz evaluate: {data_dir}", "",
          f"No image could be scored ({dataset.format} layout, {len(dataset)} images, {len(failed)} failed, "
          f"{len(dataset.problems)} annotation problems).", "",
          f"{_classes(class_names, num_classes).capitalize()}.", "", "## Problems", ""]
    md += [f"- {line}" for line in lines] or ["- none"]
    folder.mkdir(parents=True, exist_ok=True)
    return [atomic_write_bytes(folder / "report.json", text.encode("utf-8")),
            atomic_write_bytes(folder / "report.md", ("\n".join(md) + "\n").encode("utf-8"))]
