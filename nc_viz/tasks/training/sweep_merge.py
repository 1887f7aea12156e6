"""Combine sweep folders of one recipe (the sweep command's merge).

Every finished run of A, B, ... (its `result.json` of the folders' recipe tag) is copied into
`C/runs/<name>/` (model.pt, log.csv, then result.json, each atomically); a run that C already
has, or that an earlier folder gave, is kept and the later copies are counted as duplicates.
Unfinished runs are left out. C's sweep.json lists every alpha and seed; the table and plot are
rebuilt from all of C's finished runs. Folders of different recipes are refused, naming what
differs, before anything is written.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ...core.errors import NcVizError, UsageError
from ...core.files import read_json_object, regular_file_problem
from ...core.io import atomic_write
from ...core.lock import FolderLock
from .recipe import LOG_NAME, MODEL_NAME, RESULT_NAME
from .sweep import (SETTINGS_NAME, SweepSettings, build_table, claim_folder, finished_runs, run_of,
                    settings_difference, write_plot, write_table)


@dataclass
class MergeReport:
    """What a merge did: runs copied per source folder, runs found twice (the first kept), the table."""

    output_dir: Path
    copied: dict[str, list[str]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    table: dict | None = None


def folder_settings(folder: Path) -> SweepSettings:
    """The recipe of the sweep folder `folder`, from its sweep.json (checked: it must give back its tag)."""
    path = folder / SETTINGS_NAME
    if not os.path.lexists(path):
        raise UsageError(f"{folder}: not a sweep folder (no {SETTINGS_NAME})")
    stored = read_json_object(path, "sweep settings file")
    try:
        settings = SweepSettings.from_recipe_dict(stored)
        settings.check()
    except (KeyError, TypeError, ValueError, AttributeError, NcVizError) as exc:
        raise NcVizError(f"{path}: not a readable sweep settings file ({type(exc).__name__}: "
                         f"{str(exc)[:80]})") from None
    if settings.tag != stored.get("tag"):
        raise NcVizError(f"{path}: its settings do not give its tag {str(stored.get('tag'))[:20]!r} (edited, or "
                         f"written by another version of ncviz); merge folders that one sweep wrote")
    return settings


def merge_sweeps(sources: Sequence[str | os.PathLike], out: str | os.PathLike) -> MergeReport:
    """Copy the finished runs of `sources` into `out` and write its table and plot."""
    out = Path(out)
    sources = [Path(s) for s in sources]
    if not sources:
        raise UsageError("give the sweep folders to merge")
    settings = folder_settings(sources[0])
    for folder in [*sources[1:], *([out] if os.path.lexists(out / SETTINGS_NAME) else [])]:
        other = folder_settings(folder)
        if other.tag != settings.tag:
            stored = read_json_object(folder / SETTINGS_NAME, "sweep settings file")
            raise UsageError(f"{folder}: a sweep of other settings than {sources[0]} "
                             f"({settings_difference(stored, settings)}); only sweeps of one recipe merge")
    found = [(source, finished_runs(source, settings)) for source in sources]  # every result read before writing
    if not any(runs for _source, runs in found) and not (out.is_dir() and finished_runs(out, settings)):
        raise NcVizError(f"{out}: no finished run in the folders merged")  # before anything is created
    report = MergeReport(out)
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, 0, command="sweep") as lock:
        lock.acquire()
        have = set(finished_runs(out, settings))
        for source, runs in found:
            same = source.resolve() == out.resolve()
            report.copied[str(source)] = []
            for name, result in runs.items():
                if name in have:
                    report.duplicates += [] if same else [f"{name} ({source})"]
                    continue
                _copy_run(source / "runs" / name, out / "runs" / name)
                have.add(name)
                report.copied[str(source)].append(name)
        runs = finished_runs(out, settings)
        if not runs:
            raise NcVizError(f"{out}: no finished run in the folders merged")
        claim_folder(out, settings, 0, [run_of(r) for r in runs.values()])
        report.table = build_table(settings, list(runs.values()))
        write_table(out, report.table)
        write_plot(out, report.table)
    return report


def _copy_run(source: Path, target: Path) -> None:
    """model.pt, log.csv (when there), then result.json, the mark of a finished run."""
    for name in (MODEL_NAME, LOG_NAME, RESULT_NAME):
        path = source / name
        if name == LOG_NAME and not os.path.lexists(path):
            continue
        problem = regular_file_problem(path, "run file")
        if problem:
            raise NcVizError(f"{path}: {problem}; a finished run holds {MODEL_NAME} and {RESULT_NAME}")
        with open(path, "rb") as src:
            atomic_write(target / name, lambda f, src=src: shutil.copyfileobj(src, f))
