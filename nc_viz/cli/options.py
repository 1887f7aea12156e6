"""Options shared by the commands that load a model pair and draw maps."""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Callable

import click

from ..cams.methods import method_help, method_names

if TYPE_CHECKING:
    from ..pair import PairSpec
    from ..figures.style import MapStyle

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


# library parameter -> its flag, where the flag is not `--` + the name with dashes
FLAG_NAMES = {"top_k": "--top", "fmt": "--format", "json_path": "--json"}


def flag_name(param: str) -> str:
    """The command-line flag of a library parameter: `top_k` -> `--top`, `rank_by` -> `--rank-by`."""
    return FLAG_NAMES.get(param, "--" + param.replace("_", "-"))


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses `nan`, `inf` and `-inf` (a NaN passes every range
    comparison, so FloatRange lets it through). Every float option of every command uses it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def finite_float(min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False) -> FiniteFloatRange:
    """The type of a float option: a finite number, in [min, max] where given (open ends as asked)."""
    return FiniteFloatRange(min, max, min_open=min_open, max_open=max_open)


def check_cmap_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """`--cmap` is checked before any model is loaded (matplotlib's list; no torch)."""
    from ..core.errors import UsageError
    from ..figures.raster import check_colormap

    try:
        return check_colormap(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def check_device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """`--device` must read auto, cpu, cuda or cuda:N (whether CUDA is there is checked on loading)."""
    if not DEVICE_PATTERN.fullmatch(value.lower()):
        raise click.BadParameter(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N", ctx=ctx, param=param)
    return value.lower()


def _stack(*decorators: Callable) -> Callable:
    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


checkpoint_options = _stack(
    click.option("--baseline", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Baseline checkpoint (default: the shipped demo baseline)."),
    click.option("--nc", "nc", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="NC checkpoint (default: the shipped demo NC model)."),
    click.option("--arch", default=None, metavar="NAME",
                 help="Baseline architecture, when its checkpoint carries no metadata (see `ncviz models`)."),
    click.option("--nc-arch", default=None, metavar="NAME",
                 help="Second model's architecture, when its checkpoint carries no metadata (may be a plain one)."),
)

class_names_option = click.option(
    "--class-names", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
    help="Class names, one per line, as many as the models have classes (titles, --target NAME, JSON); "
         "replaces the checkpoint's own. See `ncviz classes`.")

preprocess_options = _stack(
    click.option("--input-size", type=click.IntRange(min=8), default=None, metavar="PX",
                 help="Side of the square model input (overrides the checkpoint's preprocessing)."),
    click.option("--resize", type=click.IntRange(min=8), default=None, metavar="PX",
                 help="Shorter side before the centre crop (overrides the checkpoint's; default "
                      "input size / crop ratio)."),
    click.option("--mean", default=None, metavar="R,G,B",
                 help="Normalisation mean, three comma-separated floats (overrides the checkpoint's)."),
    click.option("--std", default=None, metavar="R,G,B",
                 help="Normalisation std, three comma-separated floats > 0 (overrides the checkpoint's)."),
    click.option("--no-crop", is_flag=True, default=False,
                 help="Resize the whole image to the input size, no centre crop (overrides the checkpoint's)."),
)

model_options = _stack(
    checkpoint_options,
    click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
                 callback=check_device_option, help="Where the models run."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="Images per forward pass  [default: 8 on a CPU (batch: up to 32 for inputs under 224 px), "
                      "128 on CUDA]."),
    class_names_option,
    preprocess_options,
)

map_options = _stack(
    click.option("--method", type=click.Choice(method_names(), case_sensitive=False), default="cam",
                 show_default=True, help=method_help()),
    click.option("--target", default=None, metavar="INT|NAME",
                 help="Class to explain (default: each model's prediction)."),
    click.option("--cmap", default="jet", show_default=True, callback=check_cmap_option,
                 help="Any matplotlib colormap."),
    click.option("--alpha", type=finite_float(0.0, 1.0), default=0.5, show_default=True,
                 help="Heatmap opacity over the image."),
    click.option("--scale", type=click.Choice(["panel", "shared"]), default="panel", show_default=True,
                 help="Normalise each panel, or both models of an image on one scale."),
    click.option("--panel-size", type=click.IntRange(min=32, max=2048), default=None,
                 help="Panel side in pixels (default: the input size, at least 192)."),
    click.option("--colorbar/--no-colorbar", default=None,
                 help="A colour bar under the maps saying what the colours mean  [default: on with "
                      "--scale shared, off with --scale panel]."),
    click.option("--font-size", type=finite_float(4.0, 72.0), default=10.0, show_default=True, metavar="PT",
                 help="Titles in points at the figure's natural size (other text 0.85 of it): a PDF/SVG "
                      "as drawn (1.6-inch panels), a PNG at --dpi."),
    click.option("--dpi", type=click.IntRange(36, 1200), default=150, show_default=True,
                 help="A PNG's pixels per inch: its natural size, the pixels of its text, and its pHYs chunk."),
    click.option("--captions/--no-captions", default=True, show_default=True,
                 help="File names and predictions over and under the panels."),
)


def map_style(params: dict[str, Any]) -> "MapStyle":
    """The `MapStyle` of the map options (how the maps are computed and drawn)."""
    from ..figures.style import MapStyle

    return MapStyle(cmap=params["cmap"], alpha=params["alpha"], scale=params["scale"],
                    panel_size=params["panel_size"], colorbar=params["colorbar"], method=params["method"],
                    font_size=params["font_size"], dpi=params["dpi"], captions=params["captions"])


def pair_spec(params: dict[str, Any]) -> "PairSpec":
    """The `PairSpec` of the model options (`load_model_pair`'s settings); the preprocessing
    options are checked here, before any model is loaded (UsageError)."""
    from ..models.preprocessing import PreprocessOverride
    from ..pair import PairSpec

    preprocess = PreprocessOverride.from_options(
        *(params.get(k) for k in ("input_size", "resize", "mean", "std")), no_crop=bool(params.get("no_crop")),
        namer=flag_name)
    return PairSpec(baseline=params["baseline"], nc=params["nc"], arch=params["arch"], nc_arch=params["nc_arch"],
                    device=params["device"], class_names=params.get("class_names"), preprocess=preprocess)
