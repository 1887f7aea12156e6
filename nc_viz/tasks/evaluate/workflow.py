"""`run_evaluate`: the whole `ncviz evaluate` as one library call, no click.

In order: the options are checked; every output is checked before any work (none is a
checkpoint, a file of the data set or another output; each can be written); the pair is loaded
(under torchrun, each rank on its own device); the data set is read and its classes checked
against the models'; a data set without any label switches the maps to each model's predicted
class; the report and maps folders are locked; the images are scored (`evaluate_dataset`); rank 0
writes the report folder and the JSON file, the other ranks return None.

What a user is told goes through `EvalEvents` (the CLI echoes it; the library logs it).
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ...core.errors import NcVizError, ParameterError
from ...core.finite import warn_non_finite
from ...core.io import atomic_write_bytes, check_writable, remove_leftover_temporaries
from ...core.lock import FolderLock
from ...core.roles import ROLES
from ...datasets import Dataset, Sample, check_classes, read_annotated
from ...engine.device import rank_device
from ...engine.distributed import Shard
from ...pair import ModelPair, PairSpec, load_model_pair
from ..guards import check_dataset_outputs, check_evaluate_output
from ..provenance import GROUND_TRUTH, build_provenance
from .options import EvalOptions
from .report import REPORT_FILES, report_json, write_report
from .nothing_scored import nothing_scored_message, write_problem_report
from .run import evaluate_dataset
from .per_class import name_classes
from .score import map_path
from .summary import Evaluation

log = logging.getLogger(__name__)

__all__ = ["EvalData", "EvalEvents", "EvalOutputs", "run_evaluate", "unlabelled_explains_predicted"]


@dataclass(frozen=True)
class EvalData:
    """The annotated data set to score, and how to read it (`datasets.read_annotated`).

    `format`: auto, ncviz, wsol, imagenet, cub or folder (auto: detected when unambiguous);
    `images`: the image root of layouts that keep images apart (wsol, imagenet, cub); `split`:
    CUB's split (test or all); `strict`: an annotation problem is fatal."""

    path: str | os.PathLike
    format: str = "auto"
    images: str | os.PathLike | None = None
    split: str = "test"
    strict: bool = False


@dataclass(frozen=True)
class EvalOutputs:
    """What `run_evaluate` writes; None: not written.

    `report`: a folder for report.md, report.json, records.csv and the plots; `records`: the
    per-image records (CSV; default: the report folder's records.csv); `maps`: a folder for the
    scored maps (`maps/baseline/<image_id>.npy`, `maps/nc/<image_id>.npy`); `json`: report.json's
    content also in this file."""

    report: str | os.PathLike | None = None
    records: str | os.PathLike | None = None
    maps: str | os.PathLike | None = None
    json: str | os.PathLike | None = None


class EvalEvents:
    """What a run reports as it goes (rank 0 only); the CLI shows it, this base class logs the lines.
    `namer` writes a parameter's name where the report mentions one (the CLI: its flag)."""

    namer: Callable[[str], str] = str

    def say(self, text: str) -> None:
        """A line for the user: the data set read, a switch of the explained class."""
        log.info("%s", text)

    def start(self, total: int) -> None:
        """Scoring starts: `total` images (all ranks together)."""

    def advance(self, images: int) -> None:
        """This process scored (or failed) `images` more images."""

    def finish(self) -> None:
        """Scoring is over (also after an error)."""

    def scored(self, evaluation: Evaluation) -> None:
        """The evaluation is complete; no report is written yet."""

    def wrote(self, path: str | os.PathLike) -> None:
        """One output file is written."""


def run_evaluate(data: EvalData | str | os.PathLike, options: EvalOptions = EvalOptions(),
                 pair_spec: PairSpec = PairSpec(), outputs: EvalOutputs = EvalOutputs(),
                 events: EvalEvents | None = None) -> Evaluation | None:
    """Score both models of `pair_spec` on the annotated data set `data`, write `outputs`.

    Returns the Evaluation (its `results` and paired `intervals`); under torchrun, rank 0 returns
    it and writes the outputs, the other ranks return None.
    """
    data = data if isinstance(data, EvalData) else EvalData(data)
    events = events or EvalEvents()
    options.check()
    if pair_spec.preprocess is not None and pair_spec.preprocess.resize is not None:
        raise ParameterError("resize", "evaluate resizes the whole image to the input size (the reference's "
                                       "protocol, no crop): {param} does not apply")
    shard = Shard.from_env()
    check_outputs(data.path, pair_spec, outputs)
    spec = replace(pair_spec, device=rank_device(pair_spec.device or "auto", shard))
    pair = load_model_pair(spec)
    dataset = read_annotated(data.path, data.format, images=data.images, split=data.split,
                             class_names=pair.baseline.meta.class_names, strict=data.strict)
    check_classes(dataset, pair.baseline.meta.num_classes, pair.baseline.meta.class_names)
    lead = shard.rank == 0
    options = unlabelled_explains_predicted(dataset, options, events.say if lead else None)
    report = Path(outputs.report) if outputs.report else None
    records = Path(outputs.records) if outputs.records else (report / "records.csv" if report else None)
    maps = Path(outputs.maps) if outputs.maps else None
    scored = dataset.samples[:options.limit]
    check_dataset_outputs(dataset, pair_spec, output_files(outputs.json, records, report) + map_files(maps, scored))
    with ExitStack() as locks:   # held until the last file is written
        written = lock_folders(locks, report if lead else None, maps, shard.rank)
        remove_leftover_temporaries([f for f in output_files(None, records, report) if f.parent in written]
                                    + map_files(maps, shard.take(scored)))
        if lead:
            events.say(f"{data.path}: {dataset.format} layout, {len(dataset)} images"
                       + (f", {len(dataset.problems)} annotation problems" + (" (listed in the report)" if report else "")
                          if dataset.problems else ""))
        if lead and options.faithfulness:  # what it will cost, before it starts
            from ...metrics.faithfulness import describe_cost

            events.say(describe_cost(options.faithfulness, pair.preprocess.input_size, options.steps,
                                     len(scored)))
        evaluation = _score(pair, dataset, options, records, maps, events if lead else None)
        if evaluation is None:  # a torchrun rank other than 0: rank 0 reports
            return None
        if evaluation.images == 0:
            meta = pair.baseline.meta
            if report:
                for path in write_problem_report(report, data.path, dataset, evaluation.failed, meta.class_names,
                                                 meta.num_classes):
                    events.wrote(path)
            raise NcVizError(nothing_scored_message(data.path, dataset, evaluation.failed, meta.class_names,
                                                    meta.num_classes, report))
        warn_non_finite(evaluation.non_finite, str(data.path))
        context = evaluation_context(pair, dataset, options, data.path, records)
        evaluation.protocol = context["protocol"]
        name_classes(evaluation.per_class, pair.baseline.meta.class_names)
        events.scored(evaluation)
        if report:
            for path in write_report(report, evaluation, context, events.namer):
                events.wrote(path)
        if outputs.json:
            text = json.dumps(report_json(evaluation, context), indent=2, sort_keys=True, allow_nan=False) + "\n"
            atomic_write_bytes(outputs.json, text.encode("utf-8"))
            events.wrote(outputs.json)
    return evaluation


def check_outputs(data_dir: str | os.PathLike, spec: PairSpec, outputs: EvalOutputs) -> None:
    """Before any work: no output is a checkpoint or a file of the data set, and each file and
    folder can be written (OSError naming it)."""
    report = [Path(outputs.report) / name for name in ("report.json", "records.csv")] if outputs.report else []
    for path in [Path(p) for p in (outputs.json, outputs.records) if p] + report:
        check_evaluate_output(path, spec, Path(data_dir))
    for path in (outputs.json, outputs.records):
        if path:
            check_writable(path)
    if outputs.report:
        check_writable(outputs.report, folder=True)
        for name in REPORT_FILES:
            check_writable(Path(outputs.report) / name)
    if outputs.maps:
        for role in ROLES:
            check_writable(Path(outputs.maps) / role, folder=True)


def lock_folders(locks: ExitStack, report: Path | None, maps: Path | None, rank: int) -> set[Path]:
    """Take the folder lock of the report folder and of the maps folder (as `batch` does for its
    output folder): a second run writing into either is refused. Creates them; returns the
    folders whose files this process writes under a lock (the report folder, the maps' role folders)."""
    written: set[Path] = set()
    for folder, lock_rank in ((report, 0), (maps, rank)):
        if folder is None or folder in written:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        lock = locks.enter_context(FolderLock(folder, lock_rank, command="evaluate"))
        lock.acquire()
        written.add(folder)
    if maps is not None:
        written.update(maps / role for role in ROLES)
    return written


def map_files(maps: Path | None, samples: Sequence[Sample]) -> list[Path]:
    """The saved map files of `samples`, both models."""
    return [map_path(maps, role, s.image_id) for s in samples for role in ROLES] if maps is not None else []


def output_files(json_path: str | os.PathLike | None, records: Path | None, report: Path | None) -> list[Path]:
    """Every file evaluate writes but the maps (`map_files`)."""
    files = [Path(json_path)] if json_path else []
    files += [records] if records else []
    files += [report / name for name in REPORT_FILES if report / name != records] if report else []
    return files


def _score(pair: ModelPair, dataset: Dataset, options: EvalOptions, records: Path | None, maps: Path | None,
           events: EvalEvents | None) -> Evaluation | None:
    """evaluate_dataset, its progress told to `events` (rank 0's only)."""
    if events is None:
        return evaluate_dataset(pair, dataset, options, records, maps)
    events.start(min(len(dataset), options.limit or len(dataset)))
    try:
        return evaluate_dataset(pair, dataset, options, records, maps, on_batch=events.advance)
    finally:
        events.finish()


def unlabelled_explains_predicted(dataset: Dataset, options: EvalOptions,
                                  say: Callable[[str], None] | None = None) -> EvalOptions:
    """A data set with no label at all: each model's predicted class is explained (there is no
    true one), said once through `say`. Labelled data never switches: `read_annotated` has
    already counted and left out any image without a label among labelled ones."""
    if options.map_class == "true" and dataset.samples and all(s.label < 0 for s in dataset.samples):
        if say is not None:
            say(f"{dataset.root}: images without labels: the maps explain each model's predicted class")
        return replace(options, map_class="predicted")
    return options


def evaluation_context(pair: ModelPair, dataset: Dataset, options: EvalOptions, data_dir: str | os.PathLike,
                       records: Path | None) -> dict[str, Any]:
    """Provenance, data set and protocol settings for report.json and report.md."""
    target = GROUND_TRUTH if options.map_class == "true" else None
    fed = replace(pair.preprocess, center_crop=False)  # what evaluate feeds the models: no crop
    return {
        "provenance": build_provenance(pair, target=target, top_k=options.top_k, rank_by="contribution",
                                       precision=options.precision, preprocess=fed),
        "records": str(records) if records else None,
        "data": {"path": str(data_dir), "format": dataset.format, "images": len(dataset),
                 "problems": len(dataset.problems), "problem_list": [str(p) for p in dataset.problems[:1000]],
                 "problem_counts": dataset.problem_summary()},
        "protocol": {
            "description": ("clovaai/wsolevaluation: image and boxes resized to S x S without a crop, the map "
                            "of the {} class resized bicubically and min-max normalised, thresholds 0..0.999 "
                            "by 0.001, IoU with the +1 convention").format(options.map_class),
            "input_size": pair.preprocess.input_size, "map_class": options.map_class, "fraction": options.fraction,
            "pointing_tolerance": options.pointing_tolerance, "top_k": options.top_k, "bootstrap": options.bootstrap,
            "seed": options.seed, "limit": options.limit, "faithfulness": list(options.faithfulness),
            "deletion_insertion_steps": options.steps or pair.preprocess.input_size},
    }
