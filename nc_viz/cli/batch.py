"""`ncviz batch`: one figure per image of a folder, with summary.json and index.html."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..figures.layouts import layout_help, layout_names, neuron_layouts
from .options import map_options, map_style, model_options, pair_spec
from .progress import ProgressDisplay

_NEURON_LAYOUTS = " or ".join(neuron_layouts())


class CliEvents:
    """Shows progress (rich, on a terminal, rank 0 only) and one `error: PATH: reason` line per failure.

    Implements nc_viz.tasks.batch.BatchEvents by its methods (no import: `--help` stays free of torch).
    """

    def __init__(self, show_progress: bool, log_progress: bool = False) -> None:
        self.show_progress = show_progress
        self.log_progress = log_progress   # no terminal: a line every 30 s (progress.Heartbeat)
        self.display = ProgressDisplay()

    def start(self, total: int, todo: int) -> None:
        if not todo:
            return
        if self.show_progress:
            self.display.bar("figures", todo)
        elif self.log_progress:
            self.display.beat("batch", todo, unit="figures")

    def done(self, record: dict[str, Any]) -> None:
        self.display.advance()

    def failed(self, path: Path, reason: str) -> None:
        from ..core.names import display_name

        self.display.say(f"error: {display_name(str(path))}: {display_name(reason)}")

    def finish(self) -> None:
        self.display.stop()


def summary_line(totals: dict[str, int], output: str) -> str:
    """E.g. `12 figures in out (1 failed, 3 skipped)`."""
    written = totals["written"]
    line = f"{written} figure{'s' if written != 1 else ''} in {output}"
    parts = [f"{totals[k]} {k}" for k in ("failed", "skipped") if totals[k]]
    return line + (f" ({', '.join(parts)})" if parts else "")


@click.command("batch")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Folder for the figures, summary.json and index.html.")
@click.option("--layout", type=click.Choice(layout_names()), default="compare", show_default=True,
              help=layout_help())
@click.option("--top", "top_k", type=click.IntRange(1, 64), default=None,
              help=f"Neurons per model row with --layout {_NEURON_LAYOUTS}  [default: 8].")
@click.option("--rank-by", type=click.Choice(["contribution", "activation"]), default="contribution",
              show_default=True, help=f"How the top neurons are ranked (--layout {_NEURON_LAYOUTS}).")
@click.option("--recursive", is_flag=True, help="Also images in subfolders (mirrored in the output).")
@click.option("--skip-existing", is_flag=True, help="Resume: keep figures this run's settings drew (whole, with their tag); draw the others.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decode workers (0: decode in the main process)  [default: half the cores, at most 8].")
@click.option("--render-threads", type=click.IntRange(min=1), default=None,
              help="Threads or processes that draw, encode and write figures  [default: one per core, at most 8].")
@click.option("--render-pool", type=click.Choice(["auto", "thread", "process"]), default="auto", show_default=True,
              help="Draw figures in threads, or in processes (each with its own interpreter lock, fed "
                   "through shared memory); auto: processes for 64 figures or more on 8 cores or more.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Forward passes under autocast (maps stay float32); bf16/fp16 are meant for CUDA.")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default="png", show_default=True,
              help="Figure format: <stem>.png, .pdf or .svg (PDF and SVG are drawn by matplotlib, much slower; "
                   "--skip-existing keeps PNG figures only).")
@click.option("--targets", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="The class to explain per image: a CSV of image,class rows (image relative to DIR, class "
                   "an index or a name); images it does not name get --target (default: the prediction).")
@model_options
@map_options
def command(directory: str, output: str, layout: str, top_k: int | None, rank_by: str, recursive: bool,
            skip_existing: bool, workers: int | None, render_threads: int | None, render_pool: str,
            precision: str, fmt: str, targets: str | None, **params: Any) -> None:
    """One figure per image of DIR (same stem, .png/.pdf/.svg) in OUTPUT, with summary.json and index.html.

    Runs as one process or under torchrun, each rank on its shard of the files:
    torchrun --nproc-per-node 2 --no-python ncviz batch DIR -o OUT
    """
    from ..tasks.batch import BatchOptions, run_batch
    from ..core.errors import NcVizError, UsageError

    if top_k is not None and layout not in neuron_layouts():
        raise UsageError(f"--top applies to --layout {_NEURON_LAYOUTS} only")
    options = BatchOptions(
        layout=layout, top_k=top_k or 8, rank_by=rank_by, recursive=recursive, skip_existing=skip_existing,
        workers=workers, render_threads=render_threads, render_pool=render_pool, precision=precision,
        fmt=fmt, style=map_style(params), target=params["target"], batch_size=params["batch_size"],
        targets=targets,
    )
    rank = int(os.environ.get("RANK", "0") or 0)
    events = CliEvents(show_progress=rank == 0 and sys.stderr.isatty(), log_progress=rank == 0)
    summary = run_batch(Path(directory), Path(output), pair_spec=pair_spec(params), options=options,
                        events=events)
    totals = summary.totals
    if rank == 0:
        click.echo(summary_line(totals, output))
    if totals["failed"]:
        raise NcVizError(f"{totals['failed']} of {totals['images']} images failed (listed in "
                         f"{Path(output) / 'summary.json'})")
