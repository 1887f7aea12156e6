"""The PDF/SVG layout of a figure: the raster layout of `figures.raster`, in inches, on matplotlib.

Every position is computed here (no gridspec spacing), so rows follow each other with only
their text lines between them, and the file is cut to the drawing (a tight bounding box).
Text stays text: TrueType (Type 42) fonts in PDF, `<text>` elements in SVG.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .colour import colormap_lut
from .model import ColorBar, Figure, Panel, Row, ellipsize, fit_panel

# Used by render._encode_vector around building and saving the figure.
VECTOR_RC: dict[str, Any] = {
    "pdf.fonttype": 42,       # TrueType outlines (IEEE's checker rejects Type 3)
    "pdf.compression": 6,
    "svg.fonttype": "none",   # text as <text>, editable
    "svg.hashsalt": "ncviz",  # stable ids: the same figure gives the same bytes
    "text.parse_math": False,  # a file name with `$` stays as written
}
SAVE_OPTIONS: dict[str, Any] = {"dpi": 150, "bbox_inches": "tight", "pad_inches": 0.02}

PANEL = 1.6        # panel side, inches
GAP = 0.04         # between panels and rows, inches
# Font sizes come from the figure (`Figure.text_points`): column titles and row labels, and the
# rest (panel titles and captions, notes, colour bar text).
BAR = 0.08         # colour bar height, inches
INSET = 0.05       # a colour bar's margin at each end, inches
_INK, _MUTED = "0.08", "0.35"


def _line(points: float) -> float:
    """The height of one line of text of `points` size, in inches."""
    return points * 1.4 / 72.0


@lru_cache(maxsize=4096)
def text_width(text: str, points: float) -> float:
    """The width of `text` in inches, as matplotlib lays it out in DejaVu Sans."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    width, _height, _descent = text_to_path.get_text_width_height_descent(text, FontProperties(size=points), False)
    return width / 72.0


def fit_text(text: str, width: float, points: float) -> str:
    """Shorten `text` with an ellipsis until it fits `width` inches (as the PNG does)."""
    return ellipsize(text, width, lambda shown: text_width(shown, points))


@dataclass(frozen=True)
class _Layout:
    """Sizes in inches: the left margin for row labels, the figure's width and height."""

    label_width: float
    width: float
    height: float
    title_pt: float   # column titles and row labels
    text_pt: float    # everything else

    def column_x(self, column: int) -> float:
        return self.label_width + column * (PANEL + GAP)


def _row_height(row: Row, text_pt: float) -> float:
    lines = _line(text_pt) * (any(p.title for p in row.panels) + any(p.caption for p in row.panels))
    return ((_line(text_pt) if row.new_group else 0.0) + PANEL + lines
            + (_line(text_pt) if row.note else 0.0) + GAP)


def _header_height(fig: Figure) -> float:
    return _line(fig.text_points[0]) if any(fig.column_titles) else 0.0


def _legend_height(fig: Figure) -> float:
    return GAP + BAR + 2 * _line(fig.text_points[1]) if fig.colorbars else 0.0


def _layout(fig: Figure) -> _Layout:
    title_pt, text_pt = fig.text_points
    labels = [text_width(r.label, title_pt) for r in fig.rows if r.label]
    label_width = max(labels) + 2 * GAP if labels else 0.0
    height = _header_height(fig) + sum(_row_height(r, text_pt) for r in fig.rows) + _legend_height(fig)
    return _Layout(label_width, label_width + fig.columns * (PANEL + GAP) - GAP, height, title_pt, text_pt)


class _Canvas:
    """A matplotlib figure addressed in inches from its top-left corner."""

    def __init__(self, layout: _Layout) -> None:
        from matplotlib.figure import Figure as MplFigure

        self.layout = layout
        self.figure = MplFigure(figsize=(layout.width, layout.height))

    def _xy(self, x: float, y: float) -> tuple[float, float]:
        return x / self.layout.width, 1.0 - y / self.layout.height

    def text(self, x: float, y: float, text: str, points: float, width: float | None = None, **kwargs) -> None:
        """`text` at (x, y) inches; fitted to `width` when given."""
        if text:
            shown = fit_text(text, width, points) if width is not None else text
            self.figure.text(*self._xy(x, y), shown, fontsize=points, color=kwargs.pop("color", _INK), **kwargs)

    def axes(self, x: float, y: float, width: float, height: float):
        """Axes whose top-left corner is (x, y) inches."""
        left, top = self._xy(x, y)
        return self.figure.add_axes((left, top - height / self.layout.height, width / self.layout.width,
                                     height / self.layout.height))


def vector_figure(fig: Figure):
    """The figure as a matplotlib Figure, laid out like the PNG (call under VECTOR_RC)."""
    canvas = _Canvas(_layout(fig))
    for column, title in enumerate(fig.column_titles):
        canvas.text(canvas.layout.column_x(column) + PANEL / 2, 0.0, title, canvas.layout.title_pt, PANEL,
                    ha="center", va="top")
    y = _header_height(fig)
    for row in fig.rows:
        y = _draw_row(canvas, row, y, fig.panel_size)
    for bar in fig.colorbars:
        _draw_colorbar(canvas, bar, y + GAP)
    return canvas.figure


def _draw_row(canvas: _Canvas, row: Row, y: float, panel_size: int) -> float:
    """One row from `y` inches down; returns where the next row starts."""
    if row.new_group:
        y += _line(canvas.layout.text_pt)
    title = _line(canvas.layout.text_pt) if any(p.title for p in row.panels) else 0.0
    has_caption = any(p.caption for p in row.panels)
    top = y + title
    if row.label:
        canvas.text(canvas.layout.label_width - 2 * GAP, top + PANEL / 2, row.label, canvas.layout.title_pt, ha="right",
                    va="center")
    for column, panel in enumerate(row.panels):
        _draw_panel(canvas, panel, canvas.layout.column_x(column), y, top, panel_size)
    bottom = top + PANEL + (_line(canvas.layout.text_pt) if has_caption else 0.0)
    if row.note:
        span = len(row.panels) * (PANEL + GAP) - GAP
        canvas.text(canvas.layout.column_x(0) + span / 2, bottom, row.note, canvas.layout.text_pt, span, ha="center", va="top",
                    color=_MUTED)
        bottom += _line(canvas.layout.text_pt)
    return bottom + GAP


def _draw_panel(canvas: _Canvas, panel: Panel, x: float, y: float, top: float, panel_size: int) -> None:
    """Title at `y`, picture at `top` (exactly the PNG's pixels), caption under it."""
    canvas.text(x + PANEL / 2, y + _line(canvas.layout.text_pt) * 0.85, panel.title, canvas.layout.text_pt, PANEL, ha="center",
                va="baseline")
    if panel.image is not None:
        ax = canvas.axes(x, top, PANEL, PANEL)
        ax.set_axis_off()
        ax.imshow(fit_panel(panel.image, panel_size), interpolation="none")
    canvas.text(x + PANEL / 2, top + PANEL + GAP / 2, panel.caption, canvas.layout.text_pt, PANEL, ha="center", va="top")


def _draw_colorbar(canvas: _Canvas, bar: ColorBar, y: float) -> None:
    """A colour bar under columns bar.first..bar.last: the colormap, its ticks, its label."""
    x = canvas.layout.column_x(bar.first) + INSET
    width = canvas.layout.column_x(bar.last) + PANEL - INSET - x
    ax = canvas.axes(x, y, width, BAR)
    ax.imshow(colormap_lut(bar.cmap)[None], aspect="auto", interpolation="none", extent=(0.0, 1.0, 0.0, 1.0))
    ticks = [(position, text, align) for position, text, align
             in zip((0.0, 0.5, 1.0), bar.ticks, ("left", "center", "right")) if text]
    ax.set_xticks([p for p, _, _ in ticks], [t for _, t, _ in ticks])
    for label, (_, _, align) in zip(ax.get_xticklabels(), ticks):
        label.set_horizontalalignment(align)  # the end labels stay within the bar
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=canvas.layout.text_pt, length=2, width=0.4, pad=1, colors=_INK)
    for spine in ax.spines.values():
        spine.set_linewidth(0.4)
    canvas.text(x + width / 2, y + BAR + _line(canvas.layout.text_pt), bar.label, canvas.layout.text_pt, width, ha="center", va="top",
                color=_MUTED)

