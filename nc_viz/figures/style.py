"""`MapStyle`: how the class activation maps of a figure are drawn, one record that the figure
layouts (`build`, `layouts`), the commands (`nc_viz.tasks.figures`) and the folder run
(`nc_viz.tasks.batch`) pass along. No torch at import time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.errors import ParameterError, UsageError

SCALES = ("panel", "shared")  # per panel, or both models of an image on one scale
# Text at the natural size: 10-pt titles and 8.5-pt captions stay 6.7 and 5.7 pt when a 4.9-inch
# compare figure is printed in a 3.3-inch column.
DEFAULT_FONT_SIZE = 10.0
DEFAULT_DPI = 150
FONT_SIZES = (4.0, 72.0)
DPIS = (36, 1200)


def font_pixels(points: float, dpi: int) -> int:
    """Pixels of a `points` font at `dpi` pixels per inch (at least 6)."""
    return max(6, round(points * dpi / 72.0))


def resolve_colorbar(colorbar: bool | None, scale: str) -> bool:
    """The `colorbar` setting; unset (None) means on for `scale` `shared` only."""
    return scale == "shared" if colorbar is None else bool(colorbar)


@dataclass(frozen=True)
class MapStyle:
    """How maps are drawn: the defaults are the CLI's.

    `cmap`: a matplotlib colormap; `alpha`: the heatmap's opacity over the picture, 0..1;
    `scale`: how the maps were normalised (`panel` or `shared`; the colour bar says it);
    `panel_size`: the panel side in pixels (None: the input size, at least 192);
    `colorbar`: a colour bar under the maps (None: on with `scale` shared only);
    `method`: the CAM method, named in the map columns' titles when it is not cam;
    `font_size`: titles and row labels in points at the figure's natural size (other text 0.85 of
    it): a PDF/SVG as laid out (1.6-inch panels), a PNG at `dpi` pixels per inch;
    `dpi`: a PNG's pixels per inch (its natural size, its text's pixel size, its pHYs chunk);
    `captions`: file names and predictions under and over the panels.
    """

    cmap: str = "jet"
    alpha: float = 0.5
    scale: str = "panel"
    panel_size: int | None = None
    colorbar: bool | None = None
    method: str = "cam"
    font_size: float = DEFAULT_FONT_SIZE
    dpi: int = DEFAULT_DPI
    captions: bool = True

    @property
    def font_pixels(self) -> int:
        """The PNG pixel size of `font_size` at `dpi`."""
        return font_pixels(self.font_size, self.dpi)

    @property
    def show_colorbar(self) -> bool:
        """Whether the figure has a colour bar (`colorbar`, or its default for `scale`)."""
        return resolve_colorbar(self.colorbar, self.scale)

    def check(self) -> None:
        """Each value checked before any work: a ParameterError naming the first bad one."""
        from .colour import check_colormap

        try:
            check_colormap(self.cmap)
        except UsageError as exc:
            raise ParameterError("cmap", f"{{param}}: {exc}") from None
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not math.isfinite(self.alpha) or not 0.0 <= self.alpha <= 1.0:
            raise ParameterError("alpha", f"{{param}} {self.alpha!r}: use a number in 0..1")
        if self.scale not in SCALES:
            raise ParameterError("scale", f"{{param}} {self.scale!r}: choose from {', '.join(SCALES)}")
        if self.panel_size is not None and (isinstance(self.panel_size, bool) or not isinstance(self.panel_size, int)
                                            or self.panel_size < 1):
            raise ParameterError("panel_size", f"{{param}} {self.panel_size!r}: use a whole number of pixels, "
                                               "at least 1")
        if not (self.colorbar is None or isinstance(self.colorbar, bool)):
            raise ParameterError("colorbar", f"{{param}} {self.colorbar!r}: use True, False or None")
        if isinstance(self.font_size, bool) or not isinstance(self.font_size, (int, float)) \
                or not FONT_SIZES[0] <= self.font_size <= FONT_SIZES[1]:
            raise ParameterError("font_size", f"{{param}} {self.font_size!r}: use {FONT_SIZES[0]:g} to "
                                              f"{FONT_SIZES[1]:g} points")
        if isinstance(self.dpi, bool) or not isinstance(self.dpi, int) or not DPIS[0] <= self.dpi <= DPIS[1]:
            raise ParameterError("dpi", f"{{param}} {self.dpi!r}: use a whole number from {DPIS[0]} to {DPIS[1]}")
        from ..cams.methods import get_method

        get_method(self.method)  # ParameterError naming `method`
