"""`ncviz evaluate`: both models on annotated data, the field's localisation protocol, paired intervals."""
from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from .options import finite_float, flag_name, model_options

FORMATS = ("auto", "ncviz", "wsol", "imagenet", "cub", "folder")


@click.command("evaluate")
@click.argument("data_dir", metavar="DATA", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "data_format", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Layout of DATA (auto: detected when unambiguous, and said).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Image root for layouts that keep images apart (wsol, imagenet, cub).")
@click.option("--split", type=click.Choice(["test", "all"]), default="test", show_default=True,
              help="CUB's split (and a wsol folder of split folders).")
@click.option("--strict", is_flag=True, help="An annotation problem (bad box, missing image, ...) is fatal.")
@click.option("--map-class", type=click.Choice(["true", "predicted"]), default="true", show_default=True,
              help="Which class each map explains.")
@click.option("--top", "top_k", type=click.IntRange(2, 64), default=8, show_default=True,
              help="Neurons per image for the diversity numbers.")
@click.option("--fraction", type=finite_float(0, 1, min_open=True), default=0.5, show_default=True,
              help="Instance coverage: share of the map's maximum an instance must reach.")
@click.option("--pointing-tolerance", type=finite_float(min=0), default=None, metavar="PX",
              help="Pointing game tolerance in pixels at the input size  [default: 15 at 224, scaled].")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Resamples of the paired bootstrap over images (0: no intervals).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--faithfulness", default=None, metavar="NAMES",
              help="Also score faithfulness (forward passes on perturbed images): any of deletion, insertion, "
                   "drop, road, comma-separated, or all. Costs: deletion and insertion S + 1 forward images "
                   "per image each (--steps N: N + 1), drop 2, road 36.  [default: none]")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Deletion/insertion steps  [default: RISE's, S pixels per step, S steps at S x S].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decode workers  [default: half the cores, at most 8].")
@click.option("--score-threads", type=click.IntRange(min=0), default=None,
              help="Threads that score the maps while the next batch is forwarded (0: one after the other)  "
                   "[default: 1 on the CPU; on a GPU, this process's share of the cores less its decode workers].")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Forward passes under autocast (maps stay float32); bf16/fp16 are meant for CUDA.")
@click.option("--records", "records_path", type=click.Path(dir_okay=False), default=None,
              help="Per-image records (CSV: one row per image and model).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md, report.json, records.csv and the plots.")
@click.option("--save-maps", "maps_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the scored maps: DIR/baseline/<image_id>.npy, DIR/nc/<image_id>.npy.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write report.json's content to this file.")
@model_options
def command(data_dir: str, data_format: str, images: str | None, split: str, strict: bool, map_class: str,
            top_k: int, fraction: float, pointing_tolerance: float | None, bootstrap: int, seed: int,
            faithfulness: str | None, steps: int | None, limit: int | None, workers: int | None,
            score_threads: int | None, precision: str, records_path: str | None,
            report_dir: str | None, maps_dir: str | None, json_path: str | None, **params: Any) -> None:
    """Score both models on the annotated data set DATA, side by side, with paired intervals.

    Example: ncviz make-data heldout --count 300 && ncviz evaluate heldout --report heldout-report

    Runs as one process or under torchrun, each rank on its shard of the images; rank 0 writes:
    torchrun --nproc-per-node 2 --no-python ncviz evaluate DATA --report OUT
    """
    from ..pair import load_model_pair
    from ..datasets import check_classes, read_annotated
    from ..core.errors import NcVizError
    from ..tasks.guards import check_dataset_outputs
    from ..engine.device import rank_device
    from ..engine.distributed import Shard
    from ..tasks.evaluate import EvalOptions
    from ..metrics.faithfulness import parse_faithfulness
    from ..core.finite import warn_non_finite
    from ..core.io import atomic_write_bytes, remove_leftover_temporaries
    from ..tasks.evaluate.report import comparison_table, report_json, write_report
    from .options import model_kwargs

    options = EvalOptions(top_k=top_k, map_class=map_class, fraction=fraction, pointing_tolerance=pointing_tolerance,
                          batch_size=params["batch_size"], workers=workers, limit=limit, bootstrap=bootstrap,
                          seed=seed, precision=precision, faithfulness=tuple(parse_faithfulness(faithfulness)),
                          steps=steps, score_threads=score_threads)
    options.check()
    if params.get("resize") is not None:
        raise click.BadParameter("evaluate resizes the whole image to the input size (the reference's "
                                 "protocol, no crop): --resize does not apply", param_hint="--resize")
    shard = Shard.from_env()
    _check_outputs(data_dir, params, json_path, records_path, report_dir, maps_dir)
    kwargs = model_kwargs(params)
    pair = load_model_pair(**dict(kwargs, device=rank_device(kwargs.get("device") or "auto", shard)))
    dataset = read_annotated(data_dir, data_format, images=images, split=split,
                             class_names=pair.baseline.meta.class_names, strict=strict)
    check_classes(dataset, pair.baseline.meta.num_classes, pair.baseline.meta.class_names)
    options = _unlabelled_explains_predicted(dataset, options, shard.rank == 0)
    report = Path(report_dir) if report_dir else None
    records = Path(records_path) if records_path else (report / "records.csv" if report else None)
    maps = Path(maps_dir) if maps_dir else None
    scored = dataset.samples[:options.limit]
    check_dataset_outputs(dataset, kwargs, _output_files(json_path, records, report, maps_dir)
                          + _map_files(maps, scored))
    with ExitStack() as locks:   # held until the last file is written
        written = _lock_folders(locks, report if shard.rank == 0 else None, maps, shard.rank)
        remove_leftover_temporaries([f for f in _output_files(None, records, report, None) if f.parent in written]
                                    + _map_files(maps, shard.take(scored)))
        if shard.rank == 0:
            click.echo(f"{data_dir}: {dataset.format} layout, {len(dataset)} images"
                       + (f", {len(dataset.problems)} annotation problems (listed in the report)"
                          if dataset.problems else ""), err=True)
        evaluation = _run(pair, dataset, options, records, maps, shard.rank == 0)
        if evaluation is None:  # a torchrun rank other than 0: rank 0 reports
            return
        if evaluation.images == 0:
            raise NcVizError(f"{data_dir}: no image could be scored ({len(evaluation.failed)} failed, "
                             f"{len(dataset.problems)} annotation problems)")
        warn_non_finite(evaluation.non_finite, str(data_dir))
        click.echo(comparison_table(evaluation, flag_name))
        context = _context(pair, dataset, options, data_dir, records)
        if report:
            for path in write_report(report, evaluation, context, flag_name):
                click.echo(f"wrote {path}", err=True)
        if json_path:
            text = json.dumps(report_json(evaluation, context), indent=2, sort_keys=True, allow_nan=False) + "\n"
            atomic_write_bytes(json_path, text.encode("utf-8"))
            click.echo(f"wrote {json_path}", err=True)


def _check_outputs(data_dir: str, params: dict[str, Any], json_path: str | None, records_path: str | None,
                   report_dir: str | None, maps_dir: str | None) -> None:
    """Before any work: no output is a checkpoint or a file of the data set, and each file and
    folder can be written (OSError naming it)."""
    from ..tasks.evaluate.options import ROLES
    from ..core.io import check_writable
    from ..tasks.evaluate.report import REPORT_FILES
    from ..tasks.guards import check_evaluate_output
    from .options import model_kwargs

    report = [Path(report_dir) / name for name in ("report.json", "records.csv")] if report_dir else []
    for path in [Path(p) for p in (json_path, records_path) if p] + report:
        check_evaluate_output(path, model_kwargs(params), Path(data_dir))
    for path in (json_path, records_path):
        if path:
            check_writable(path)
    if report_dir:
        check_writable(report_dir, folder=True)
        for name in REPORT_FILES:
            check_writable(Path(report_dir) / name)
    if maps_dir:
        for role in ROLES:
            check_writable(Path(maps_dir) / role, folder=True)


def _lock_folders(locks: ExitStack, report: Path | None, maps: Path | None, rank: int) -> set[Path]:
    """Take the folder lock of the report folder and of the maps folder (as `batch -o` does): a
    second run writing into either is refused. Creates them; returns the folders whose files
    this process writes under a lock (the report folder, the maps' role folders)."""
    from ..tasks.evaluate.options import ROLES
    from ..core.lock import FolderLock

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


def _map_files(maps: Path | None, samples: Any) -> list[Path]:
    """The `--save-maps` files of `samples`, both models."""
    from ..tasks.evaluate.options import ROLES
    from ..tasks.evaluate.score import map_path

    return [map_path(maps, role, s.image_id) for s in samples for role in ROLES] if maps is not None else []


def _run(pair: Any, dataset: Any, options: Any, records: Path | None, maps: Path | None, show: bool) -> Any:
    """evaluate_dataset with a progress bar (images/s) on a terminal (rank 0's shard under torchrun)."""
    from ..tasks.evaluate import evaluate_dataset

    total = min(len(dataset), options.limit or len(dataset))
    if not (show and sys.stderr.isatty()):
        return evaluate_dataset(pair, dataset, options, records, maps)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .batch import _speed_column

    with Progress(TextColumn("images"), BarColumn(), MofNCompleteColumn(), _speed_column(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as progress:
        task = progress.add_task("images", total=total)
        return evaluate_dataset(pair, dataset, options, records, maps,
                                on_batch=lambda n: progress.advance(task, n))


def _unlabelled_explains_predicted(dataset: Any, options: Any, say: bool) -> Any:
    """A data set with no label at all: each model's predicted class is explained (there is no
    true one), said once. Labelled data never switches: `read_annotated` has already counted and
    left out any image without a label among labelled ones."""
    from dataclasses import replace

    if options.map_class == "true" and dataset.samples and all(s.label < 0 for s in dataset.samples):
        if say:
            click.echo(f"{dataset.root}: images without labels: the maps explain each model's predicted class",
                       err=True)
        return replace(options, map_class="predicted")
    return options


def _output_files(json_path: str | None, records: Path | None, report: Path | None,
                  maps_dir: str | None) -> list[Path]:
    """Every file evaluate writes but the maps (`_map_files`)."""
    from ..tasks.evaluate.report import REPORT_FILES

    files = [Path(json_path)] if json_path else []
    files += [records] if records else []
    files += [report / name for name in REPORT_FILES if report / name != records] if report else []
    return files


def _context(pair: Any, dataset: Any, options: Any, data_dir: str, records: Path | None) -> dict[str, Any]:
    """Provenance, data set and protocol settings for report.json and report.md."""
    from dataclasses import replace

    from ..tasks.provenance import GROUND_TRUTH, build_provenance

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
