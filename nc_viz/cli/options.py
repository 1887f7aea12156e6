"""Options shared by the commands that load a model pair and draw maps."""
from __future__ import annotations

from typing import Any, Callable

import click

METHOD_CHOICES = ("cam", "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam",
                  "scorecam", "ablationcam")


def _stack(*decorators: Callable) -> Callable:
    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


model_options = _stack(
    click.option("--baseline", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Baseline checkpoint (default: the shipped demo baseline)."),
    click.option("--nc", "nc", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="NC checkpoint (default: the shipped demo NC model)."),
    click.option("--arch", default=None, metavar="NAME",
                 help="Baseline architecture, when its checkpoint carries no metadata (see `ncviz models`)."),
    click.option("--nc-arch", default=None, metavar="NAME",
                 help="Second model's architecture, when its checkpoint carries no metadata (may be a plain one)."),
    click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
                 help="Where the models run."),
    click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                 help="Images per forward pass."),
)

map_options = _stack(
    click.option("--method", type=click.Choice(METHOD_CHOICES, case_sensitive=False), default="cam",
                 show_default=True, help="cam (one forward pass) or a grad-cam method."),
    click.option("--target", default=None, metavar="INT|NAME",
                 help="Class to explain (default: each model's prediction)."),
    click.option("--cmap", default="jet", show_default=True, help="Any matplotlib colormap."),
    click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
                 help="Heatmap opacity over the image."),
    click.option("--scale", type=click.Choice(["panel", "shared"]), default="panel", show_default=True,
                 help="Normalise each panel, or both models of an image on one scale."),
    click.option("--panel-size", type=click.IntRange(min=32, max=2048), default=None,
                 help="Panel side in pixels (default: the input size, at least 192)."),
    click.option("--colorbar/--no-colorbar", default=None,
                 help="A colour bar under the maps saying what the colours mean  [default: on with "
                      "--scale shared, off with --scale panel]."),
)


def model_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `load_model_pair` from parsed options."""
    return {k: params[k] for k in ("baseline", "nc", "arch", "nc_arch", "device")}
