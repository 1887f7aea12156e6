"""Size limits that keep one input from costing gigabytes (README "What ncviz
refuses and why"), each configurable by an
environment variable. No torch here.

- NCVIZ_MAX_IMAGE_PIXELS: an image whose header claims more pixels is refused before it is
  decoded (default 64 MP: a 9000 x 9000 JPEG of 5 KB would decode to 243 MB of RGB per decode
  worker; any camera photo up to 64 MP still passes).
- NCVIZ_MAX_FIGURE_PIXELS: a figure larger than this is refused before it is drawn (default
  64 MP; a panel size of 2048 with 64 top neurons would ask for hundreds of megapixels and gigabytes).
"""
from __future__ import annotations

import os

from .errors import ParameterError, UsageError

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
DEFAULT_MAX_FIGURE_PIXELS = 64_000_000


def _limit(name: str, default: int) -> int:
    """The value of environment variable `name` (a positive integer), else `default`."""
    text = os.environ.get(name, "").replace("_", "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name}={os.environ[name]!r}: give a positive number of pixels")
    return int(text)


def max_image_pixels() -> int:
    return _limit("NCVIZ_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def max_figure_pixels() -> int:
    return _limit("NCVIZ_MAX_FIGURE_PIXELS", DEFAULT_MAX_FIGURE_PIXELS)


def image_size_problem(width: int, height: int) -> str | None:
    """Why an image of this header size is refused, or None."""
    limit = max_image_pixels()
    if width * height <= limit:
        return None
    return (f"refused: its header says {width} x {height} = {width * height / 1e6:.1f} megapixels, above the "
            f"limit of {limit / 1e6:g} (raise it with NCVIZ_MAX_IMAGE_PIXELS)")


def figure_size(rows: int, columns: int, panel: int, font: int | None = None) -> tuple[int, int]:
    """About the (width, height) in pixels of a raster figure (render.compose_array's layout) whose
    titles are `font` pixels (None: the size drawn from the panel side)."""
    font = font or max(11, panel // 15)
    line, pad = int(font * 1.35), max(4, panel // 40)
    return columns * (panel + pad) + pad + 8 * font, rows * (panel + 4 * line + pad) + line + 2 * pad


def check_figure_shape(rows: int, columns: int, panel: int, lower: str, font: int | None = None) -> None:
    """ParameterError when a figure of this shape would exceed the limit; `lower` names what to
    lower, its parameters written `{param:NAME}` (ParameterError's notation), `panel_size` first."""
    width, height = figure_size(rows, columns, panel, font)
    limit = max_figure_pixels()
    if width * height > limit:
        raise ParameterError("panel_size", f"the figure would be about {width} x {height} px "
                                           f"({width * height / 1e6:.0f} megapixels), "
                         f"above the limit of {limit / 1e6:g}; lower {lower} "
                         f"(or raise NCVIZ_MAX_FIGURE_PIXELS)")


def check_figure(figure) -> None:
    """check_figure_shape for a render.Figure (the options named are those that grow it)."""
    check_figure_shape(len(figure.rows), figure.columns, figure.panel_size,
                       "{param}, {param:top_k} or the number of images", figure.text_pixels[0])
