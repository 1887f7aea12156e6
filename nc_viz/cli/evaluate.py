"""`ncviz evaluate`: both models on annotated data, the field's localisation protocol, paired intervals."""
from __future__ import annotations

import sys
from typing import Any

import click

from .options import finite_float, flag_name, model_options
from .progress import ProgressDisplay, duration

FORMATS = ("auto", "ncviz", "wsol", "imagenet", "cub", "folder", "images")  # "auto" + datasets.reader_names()


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
    from ..metrics.faithfulness import parse_faithfulness
    from ..tasks.evaluate import EvalData, EvalOptions, EvalOutputs, run_evaluate
    from .options import pair_spec

    options = EvalOptions(top_k=top_k, map_class=map_class, fraction=fraction, pointing_tolerance=pointing_tolerance,
                          batch_size=params["batch_size"], workers=workers, limit=limit, bootstrap=bootstrap,
                          seed=seed, precision=precision, faithfulness=tuple(parse_faithfulness(faithfulness)),
                          steps=steps, score_threads=score_threads)
    options.check()
    if params.get("resize") is not None:
        raise click.BadParameter("evaluate resizes the whole image to the input size (the reference's "
                                 "protocol, no crop): --resize does not apply", param_hint="--resize")
    events = CliEvents(show_progress=sys.stderr.isatty(),  # run_evaluate reports rank 0's progress only
                       estimate=bool(options.faithfulness))
    run_evaluate(EvalData(data_dir, data_format, images=images, split=split, strict=strict), options,
                 pair_spec(params), EvalOutputs(report=report_dir, records=records_path, maps=maps_dir, json=json_path),
                 events)


class CliEvents:
    """Echoes what `run_evaluate` reports: its lines and each written file on stderr, the table on
    stdout, a progress bar (images/s) on a terminal, else a progress line every 30 s
    (`progress.Heartbeat`); with `estimate`, the time the whole run will take, from its first batch.

    Implements nc_viz.tasks.evaluate.EvalEvents by its methods (no import: `--help` stays free of torch).
    """

    namer = staticmethod(flag_name)

    def __init__(self, show_progress: bool, estimate: bool = False) -> None:
        self.show_progress = show_progress
        self.estimate = estimate
        self.display = ProgressDisplay()
        self.total, self.done, self.started = 0, 0, 0.0

    def say(self, text: str) -> None:
        click.echo(text, err=True)

    def start(self, total: int) -> None:
        import time

        self.total, self.done, self.started = total, 0, time.monotonic()
        if self.show_progress:
            self.display.bar("images", total)
        else:
            self.display.beat("evaluate", total)

    def advance(self, images: int) -> None:
        if self.estimate and not self.done and images:
            self._estimate(images)
        self.done += images
        self.display.advance(images)

    def _estimate(self, images: int) -> None:
        """After the first batch: its time, and the whole run's at that pace (this process's share)."""
        import math
        import os
        import time

        seconds = time.monotonic() - self.started
        share = math.ceil(self.total / max(1, int(os.environ.get("WORLD_SIZE", "1") or 1)))
        self.display.say(f"first batch: {images} image{'s' * (images != 1)} in {duration(seconds)}; at that pace "
                         f"about {duration(seconds / images * share)} for {share} images")

    def finish(self) -> None:
        self.display.stop()

    def scored(self, evaluation: Any) -> None:
        from ..tasks.evaluate.report import comparison_table

        click.echo(comparison_table(evaluation, flag_name))

    def wrote(self, path: Any) -> None:
        click.echo(f"wrote {path}", err=True)
