"""`run_sanity`: the whole `ncviz sanity` as one library call, no click.

In order: the options are checked; every output is checked before any work (none is a
checkpoint or a file of the data set; each can be written); the pair is loaded (under
torchrun, each rank on its own device); the data set is read as `evaluate` reads it (any of its
layouts, or a plain folder of images) and its classes checked against the models'; the report
and maps folders are locked; both models go through the randomisation schedule
(`sanity_dataset`); rank 0 writes the report folder, the records and the JSON file.
Nothing is written to the checkpoints, and the loaded models are only read.
"""
from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ...core.errors import NcVizError
from ...core.io import atomic_write_bytes, check_writable
from ...core.lock import FolderLock
from ...core.roles import ROLES
from ...datasets import check_classes, read_annotated
from ...engine.device import rank_device
from ...engine.distributed import Shard
from ...pair import ModelPair, PairSpec, load_model_pair
from ..evaluate.workflow import EvalData, EvalEvents
from ..guards import check_dataset_outputs, check_evaluate_output
from ..provenance import GROUND_TRUTH, build_provenance
from .report import REPORT_FILES, comparison_tables, intervals, report_json, write_records, write_report
from .run import SanityOptions, SanityResult, sanity_dataset

__all__ = ["SanityData", "SanityOutputs", "run_sanity", "protocol_text"]

SanityData = EvalData
"""The data set to read and how (`datasets.read_annotated`): the same as `evaluate`'s."""


@dataclass(frozen=True)
class SanityOutputs:
    """What `run_sanity` writes; None: not written. `maps`: every map after every step,
    `maps/<role>/<NN>_<step>/<image_id>.npy` (00_original first)."""

    report: str | os.PathLike | None = None
    records: str | os.PathLike | None = None
    maps: str | os.PathLike | None = None
    json: str | os.PathLike | None = None


def protocol_text(options: SanityOptions, input_size: int) -> str:
    """What the numbers are, for the report and report.json."""
    order = ("from the classifier towards the input, one more {} randomised at each step"
             if options.mode == "cascading" else "one {} at a time randomised, the others as trained")
    return ("Model parameter randomisation (Adebayo et al., NeurIPS 2018): " + order.format(options.granularity)
            + " (each module's own reset_parameters(), seed {}); maps of the same class per image (its label, else "
              "the original model's prediction) upsampled to the input resolution {} x {} as ncviz draws them "
              "(bilinear), compared with the original map: Spearman rank correlation of the absolute and of the "
              "signed maps; SSIM and the Pearson correlation of HOG features of the absolute maps min-max "
              "normalised to [0, 1]".format(options.seed, input_size, input_size))


def run_sanity(data: SanityData | str | os.PathLike, options: SanityOptions = SanityOptions(),
               pair_spec: PairSpec = PairSpec(), outputs: SanityOutputs = SanityOutputs(),
               events: EvalEvents | None = None) -> SanityResult | None:
    """Both models of `pair_spec` through the randomisation test on the images of `data`.

    Returns the SanityResult; under torchrun, rank 0 returns it and writes the outputs, the
    other ranks return None. `events.scored` receives the printed tables (str).
    """
    data = data if isinstance(data, EvalData) else EvalData(data)
    events = events or EvalEvents()
    options.check()
    shard = Shard.from_env()
    report = Path(outputs.report) if outputs.report else None
    records = Path(outputs.records) if outputs.records else (report / "records.csv" if report else None)
    maps = Path(outputs.maps) if outputs.maps else None
    files = ([Path(outputs.json)] if outputs.json else []) + ([records] if records else []) + \
        ([report / name for name in REPORT_FILES if report / name != records] if report else [])
    for path in files:
        check_evaluate_output(path, pair_spec, Path(data.path))
        check_writable(path)
    if maps is not None:
        for role in ROLES:
            check_writable(maps / role, folder=True)
    pair = load_model_pair(replace(pair_spec, device=rank_device(pair_spec.device or "auto", shard)))
    dataset = read_annotated(data.path, data.format, images=data.images, split=data.split,
                             class_names=pair.baseline.meta.class_names, strict=data.strict)
    check_classes(dataset, pair.baseline.meta.num_classes, pair.baseline.meta.class_names)
    check_dataset_outputs(dataset, pair_spec, files)
    lead = shard.rank == 0
    if lead:
        events.say(f"{data.path}: {dataset.format} layout, {len(dataset)} images")
    with ExitStack() as locks:
        for folder, rank in ((report if lead else None, 0), (maps if maps != report else None, shard.rank)):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                locks.enter_context(FolderLock(folder, rank, command="sanity")).acquire()
        result = _score(pair, dataset.samples, options, maps, events if lead else None)
        if result is None:
            return None
        if result.images == 0:
            raise NcVizError(f"{data.path}: no image could be read ({len(result.failed)} failed)")
        found = intervals(result, options.bootstrap, options.seed)
        namer: Callable[[str], str] = events.namer
        events.scored(comparison_tables(result, found, namer))
        context = sanity_context(pair, dataset, options, data.path, records, maps)
        if report is not None:
            for path in write_report(report, result, found, context, records or report / "records.csv", namer):
                events.wrote(path)
        elif records is not None:
            events.wrote(write_records(records, result))
        if outputs.json:
            text = json.dumps(report_json(result, found, context), indent=2, sort_keys=True, allow_nan=False) + "\n"
            atomic_write_bytes(outputs.json, text.encode("utf-8"))
            events.wrote(outputs.json)
    return result


def _score(pair: ModelPair, samples: Any, options: SanityOptions, maps: Path | None,
           events: EvalEvents | None) -> SanityResult | None:
    if events is None:
        return sanity_dataset(pair, samples, options, maps)
    events.start(min(len(samples), options.limit or len(samples)))
    try:
        return sanity_dataset(pair, samples, options, maps, on_batch=events.advance)
    finally:
        events.finish()


def sanity_context(pair: ModelPair, dataset: Any, options: SanityOptions, data_dir: str | os.PathLike,
                   records: Path | None, maps: Path | None) -> dict[str, Any]:
    """Provenance, data set and protocol settings for report.json and report.md."""
    labelled = any(s.label >= 0 for s in dataset.samples)
    return {
        "provenance": build_provenance(pair, method=options.method, target=GROUND_TRUTH if labelled else None,
                                       precision=options.precision),
        "records": str(records) if records else None,
        "maps": str(maps) if maps else None,
        "data": {"path": str(data_dir), "format": dataset.format, "images": len(dataset),
                 "problems": len(dataset.problems)},
        "protocol": {"description": protocol_text(options, pair.preprocess.input_size), "method": options.method,
                     "mode": options.mode, "granularity": options.granularity, "seed": options.seed,
                     "bootstrap": options.bootstrap, "limit": options.limit, "input_size": pair.preprocess.input_size,
                     "map_class": "label" if labelled else "predicted"},
    }
