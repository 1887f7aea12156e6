"""`ncviz sanity`: the model parameter randomisation test, baseline against NC, paired intervals."""
from __future__ import annotations

import sys
from typing import Any

import click

from ..cams.methods import method_names
from .evaluate import FORMATS, CliEvents
from .options import model_options


@click.command("sanity")
@click.argument("data_dir", metavar="DATA", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "data_format", type=click.Choice(FORMATS), default="auto",
              show_default=True, help="Layout of DATA (auto: detected; a plain folder of images is read too).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Image root for layouts that keep images apart (wsol, imagenet, cub).")
@click.option("--split", type=click.Choice(["test", "all"]), default="test", show_default=True,
              help="CUB's split (and a wsol folder of split folders).")
@click.option("--strict", is_flag=True, help="An annotation problem (bad box, missing image, ...) is fatal.")
@click.option("--method", type=click.Choice(method_names(), case_sensitive=False), default="cam",
              show_default=True, help="The map tested (cam or a gradient method).")
@click.option("--mode", type=click.Choice(["cascading", "independent"]), default="cascading", show_default=True,
              help="cascading: one more layer randomised at each step, from the classifier down; "
                   "independent: one at a time.")
@click.option("--granularity", type=click.Choice(["block", "layer"]), default="block", show_default=True,
              help="A step randomises one block (a residual block, an NC block, ...) or one layer.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights and the bootstrap.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Resamples of the paired bootstrap over images (0: no intervals).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decode workers  [default: half the cores, at most 8].")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Forward passes under autocast (maps stay float32); bf16/fp16 are meant for CUDA.")
@click.option("--figure-images", type=click.IntRange(min=0, max=32), default=4, show_default=True,
              help="Images shown in the report's maps figure.")
@click.option("--records", "records_path", type=click.Path(dir_okay=False), default=None,
              help="Per-image records (CSV: one row per image, step and model).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md, report.json, records.csv and the figures.")
@click.option("--save-maps", "maps_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for every map after every step: DIR/<baseline|nc>/<NN>_<step>/<image_id>.npy.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write report.json's content to this file.")
@model_options
def command(data_dir: str, data_format: str, images: str | None, split: str, strict: bool, method: str, mode: str,
            granularity: str, seed: int, bootstrap: int, limit: int | None, workers: int | None, precision: str,
            figure_images: int, records_path: str | None, report_dir: str | None, maps_dir: str | None,
            json_path: str | None, **params: Any) -> None:
    """Do the maps depend on what the models learned? Randomise the layers, compare the maps.

    Example: ncviz make-data heldout --count 40 && ncviz sanity heldout --report sanity-report

    Runs as one process or under torchrun, each rank on its shard of the images; rank 0 writes:
    torchrun --nproc-per-node 2 --no-python ncviz sanity DATA --report OUT
    """
    from ..tasks.sanity import SanityData, SanityOptions, SanityOutputs, run_sanity
    from .options import pair_spec

    options = SanityOptions(method=method.lower(), mode=mode, granularity=granularity, seed=seed, bootstrap=bootstrap,
                            batch_size=params["batch_size"], workers=workers, limit=limit, precision=precision,
                            figure_images=figure_images)
    options.check()
    run_sanity(SanityData(data_dir, data_format, images=images, split=split, strict=strict), options,
               pair_spec(params), SanityOutputs(report=report_dir, records=records_path, maps=maps_dir, json=json_path),
               SanityEvents(show_progress=sys.stderr.isatty()))


class SanityEvents(CliEvents):
    """As `evaluate`'s events; the tables arrive as text."""

    def scored(self, tables: Any) -> None:
        click.echo(tables)
