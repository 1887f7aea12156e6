"""`ncviz compare`: Input | CAM-Baseline | CAM-Ours, one row per image (Figs. 1-2)."""
from __future__ import annotations

from pathlib import Path

import click

from .options import map_options, map_style, model_options, pair_spec


@click.command("compare")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(), default="compare.png",
              show_default=True, help="Figure file (.png, .pdf or .svg).")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default=None,
              help="Output format (default: from the output's suffix).")
@click.option("--titles", default="Input,CAM-Baseline,CAM-Ours", show_default=True,
              help="Three comma-separated column titles (four with --diff; the fourth defaults to "
                   "\"NC − Baseline\").")
@click.option("--row-labels", default=None, metavar="A,B,...",
              help="One comma-separated label per IMAGE, left of its row (e.g. \"(a),(b)\").")
@click.option("--diff", is_flag=True,
              help="A fourth column: NC minus baseline on the shared scale (RdBu_r, white at zero).")
@click.option("--save-maps", type=click.Path(), default=None,
              help="Also write the raw maps, logits and inputs to this .npz file.")
@model_options
@map_options
def command(images: tuple[str, ...], output: str, fmt: str | None, titles: str, row_labels: str | None,
            diff: bool, save_maps: str | None, **params) -> None:
    """Class activation maps of both models, one row per IMAGE.

    Example: ncviz compare cat.jpg dogs.png --baseline base.pt --nc nc.pt -o fig.png
    """
    from ..figures.raster import format_for  # no torch: a usage error comes before the models

    column_titles = [t.strip() for t in titles.split(",")]
    if len(column_titles) not in ((3, 4) if diff else (3,)):
        raise click.BadParameter("give three comma-separated titles (four with --diff)", param_hint="--titles")
    labels = None if row_labels is None else [t.strip() for t in row_labels.split(",")]
    if labels is not None and len(labels) != len(images):
        raise click.BadParameter(f"give one comma-separated label per image ({len(images)}), got {len(labels)}",
                                 param_hint="--row-labels")
    format_for(output, fmt)
    from ..tasks.figures import run_compare

    written = run_compare(
        [Path(p) for p in images], Path(output), fmt=fmt, titles=column_titles, diff=diff, style=map_style(params),
        save_maps=Path(save_maps) if save_maps else None, pair_spec=pair_spec(params),
        target=params["target"], batch_size=params["batch_size"], row_labels=labels,
    )
    for path in written:
        click.echo(f"wrote {path}")
