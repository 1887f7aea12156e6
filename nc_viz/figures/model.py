"""The figure model that the raster (`raster`) and vector (`vector`) drawings share: a
grid of rows of panels, column titles and colour bars. Plain data, no drawing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image


TEXT_SHARE = 0.85  # captions, panel titles, notes and colour bar text against titles


@dataclass
class Panel:
    """One cell: an RGB uint8 picture (H, W, 3), a title above and a caption below."""

    image: np.ndarray | None
    title: str = ""
    caption: str = ""


@dataclass
class Row:
    """A row of panels, an optional label on its left and a note line under it."""

    panels: list[Panel]
    label: str = ""
    note: str = ""
    new_group: bool = False  # extra space above: the first row of another image


@dataclass(frozen=True)
class ColorBar:
    """A colour scale under the grid, spanning columns `first`..`last` (inclusive): the
    colormap from left to right, `ticks` at its left end, middle and right end, `label` below."""

    cmap: str
    label: str
    first: int
    last: int
    ticks: tuple[str, str, str] = ("0", "", "1")


@dataclass
class Figure:
    """A grid of rows; `column_titles` head the columns once, at the top; `colorbars` under it."""

    rows: list[Row]
    column_titles: Sequence[str] = ()
    panel_size: int = 224
    meta: dict[str, str] = field(default_factory=dict)
    colorbars: Sequence[ColorBar] = ()
    font_points: float | None = None  # titles at the natural size (None: the PNG's from the panel side)
    dpi: int = 150                    # a PNG's pixels per inch: its natural size and its text's pixels

    @property
    def columns(self) -> int:
        return max([len(self.column_titles)] + [len(r.panels) for r in self.rows])

    @property
    def text_pixels(self) -> tuple[int, int]:
        """(titles and row labels, other text): the PNG's font sizes in pixels."""
        if self.font_points is None:
            font = max(11, self.panel_size // 15)
            return font, max(10, int(font * 0.85))
        font = max(6, round(self.font_points * self.dpi / 72.0))
        return font, max(6, round(font * TEXT_SHARE))

    @property
    def text_points(self) -> tuple[float, float]:
        """(titles and row labels, other text): the PDF/SVG font sizes in points."""
        if self.font_points is None:
            return 7.0, 6.0
        return self.font_points, round(self.font_points * TEXT_SHARE, 2)


def fit_panel(image: np.ndarray, size: int) -> np.ndarray:
    """The picture at size x size (bilinear when it differs)."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def ellipsize(text: str, width: float, measure: Callable[[str], float]) -> str:
    """`text`, shortened with an ellipsis until `measure` of it fits `width` (the raster and
    vector drawings, each in its own units)."""
    if not text or measure(text) <= width:
        return text
    while text and measure(text + "…") > width:
        text = text[:-1]
    return text + "…"
