"""`ncviz neurons`: per image, the top-k neuron maps of the baseline, then of the NC model (Fig. 3)."""
from __future__ import annotations

from pathlib import Path

import click

from ..cams.methods import neuron_methods
from .options import map_options, map_style, model_options, pair_spec

RANK_CHOICES = ("contribution", "activation")


@click.command("neurons")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(), default="neurons.png",
              show_default=True, help="Figure file (.png, .pdf or .svg).")
@click.option("--top", "top_k", type=click.IntRange(1, 64), default=8, show_default=True, metavar="K",
              help="Neurons (channels) per model row, 1..64 and at most the last layer's channels.")
@click.option("--rank-by", type=click.Choice(RANK_CHOICES), default="contribution", show_default=True,
              help="contribution: w_k^c * mean f_k (share of the logit); activation: mean f_k.")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default=None,
              help="Output format (default: from the output's suffix).")
@click.option("--titles", default="Input,Baseline,Ours", show_default=True,
              help="Three comma-separated titles: the input column, the baseline row, the NC row.")
@click.option("--save-maps", type=click.Path(), default=None,
              help="Also write the raw CAMs, neuron maps, ids and contributions to this .npz file.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Also write per image and model: class, probability, neuron ids, shares, diversity.")
@model_options
@map_options
def command(images: tuple[str, ...], output: str, top_k: int, rank_by: str, fmt: str | None, titles: str,
            save_maps: str | None, json_path: str | None, **params) -> None:
    """Top-k neuron maps w_k^c f_k of both models, two rows per IMAGE.

    Each panel is titled with its channel and its share of the class logit minus bias; the
    note under a row gives the diversity of its maps. Neuron maps need --method cam.

    Example: ncviz neurons cat.jpg --top 8 --baseline base.pt --nc nc.pt -o fig3.png
    """
    from ..figures.raster import format_for  # no torch: a usage error comes before the models

    names = [t.strip() for t in titles.split(",")]
    if len(names) != 3:
        raise click.BadParameter("give exactly three comma-separated titles", param_hint="--titles")
    format_for(output, fmt)
    from ..tasks.figures import run_neurons

    written = run_neurons(
        [Path(p) for p in images], Path(output), top_k=top_k, rank_by=rank_by, fmt=fmt, titles=names,
        style=map_style(params),
        save_maps=Path(save_maps) if save_maps else None, json_path=Path(json_path) if json_path else None,
        pair_spec=pair_spec(params), target=params["target"], batch_size=params["batch_size"],
    )
    for path in written:
        click.echo(f"wrote {path}")


def _neuron_method(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Only the methods with neuron maps (the CAM decomposition); checked before torch is imported."""
    name = str(value).lower()
    if name not in neuron_methods():
        raise click.BadParameter(f"{value}: neuron maps need the CAM decomposition; use "
                                 + " or ".join(f"--method {m}" for m in neuron_methods()))
    return name


def _restrict_method(cmd: click.Command) -> None:
    """`--method` of the shared map options, narrowed to the methods that give neuron maps: the help
    lists only those, and another method is refused with the reason."""
    for param in cmd.params:
        if param.name == "method" and isinstance(param, click.Option):
            param.type = click.STRING
            param.metavar = f"[{'|'.join(neuron_methods())}]"
            param.callback = _neuron_method
            param.help = "Neuron maps need the CAM decomposition: " + ", ".join(neuron_methods()) + " only."


_restrict_method(command)
