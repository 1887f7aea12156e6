"""The Pillow raster drawing of a figure as ncviz drew it before the array compositor: the
oracle that `figures.raster.compose_array` is checked against (same size, same text, within
one colour level on nearly every pixel)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nc_viz.figures.colour import colormap_lut
from nc_viz.figures.model import ColorBar, Figure, Row, fit_panel  # noqa: F401

_BACKGROUND = 255
_INK = 20
_MUTED = 90


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans from matplotlib's data (always installed); Pillow's default otherwise."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default()


@dataclass(frozen=True)
class _Metrics:
    panel: int
    pad: int
    font: int
    label_width: int

    @property
    def line(self) -> int:
        return int(self.font * 1.35)


def _metrics(fig: Figure) -> _Metrics:
    font = fig.text_pixels[0]  # the font size the figure asks for (the one input the drawing gained)
    has_labels = any(r.label for r in fig.rows)
    label_width = int(font * 0.62 * max([len(r.label) for r in fig.rows] + [0])) + font if has_labels else 0
    return _Metrics(panel=fig.panel_size, pad=max(4, fig.panel_size // 40), font=font, label_width=label_width)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """Shorten `text` with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _centered(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, text: str, font, fill) -> None:
    if not text:
        return
    text = _fit_text(draw, text, width, font)
    w = draw.textlength(text, font=font)
    draw.text((x + (width - w) / 2, y), text, font=font, fill=fill)


def _row_height(row: Row, m: _Metrics) -> int:
    has_title = any(p.title for p in row.panels)
    has_caption = any(p.caption for p in row.panels)
    gap = m.line if row.new_group else 0
    return gap + m.panel + m.line * (int(has_title) + int(has_caption) + int(bool(row.note))) + m.pad


def compose(fig: Figure) -> Image.Image:
    """Draw the figure as one RGB image."""
    return Image.fromarray(compose_array(fig))


def compose_array(fig: Figure) -> np.ndarray:
    """Draw the figure as an (H, W, 3) uint8 array: text with Pillow, pictures copied in place."""
    m = _metrics(fig)
    cell = m.panel + m.pad
    header = m.line + m.pad if any(fig.column_titles) else 0
    width = m.label_width + fig.columns * cell + m.pad
    height = header + sum(_row_height(r, m) for r in fig.rows) + m.pad + _legend_height(fig, m)
    canvas = Image.new("L", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small = _font(m.font), _font(fig.text_pixels[1])
    for col, title in enumerate(fig.column_titles):
        _centered(draw, m.label_width + m.pad + col * cell, m.pad, m.panel, title, font, _INK)
    pictures: list[tuple[np.ndarray, int, int]] = []
    y = header + m.pad
    for row in fig.rows:
        y = _draw_row(pictures, draw, row, y, m, font, small)
    bars = _draw_legend(draw, fig, y, m, small)
    pixels = np.repeat(np.asarray(canvas)[:, :, None], 3, axis=2)
    for picture, x, top in pictures:
        pixels[top:top + m.panel, x:x + m.panel] = fit_panel(picture, m.panel)
    for bar, x, top in bars:
        pixels[top:top + bar.shape[0], x:x + bar.shape[1]] = bar
    return pixels


def _draw_row(pictures: list[tuple[np.ndarray, int, int]], draw: ImageDraw.ImageDraw, row: Row, y: int,
              m: _Metrics, font, small) -> int:
    """Draw the row's text; queue its pictures as (picture, x, top). Returns the next row's y."""
    cell = m.panel + m.pad
    if row.new_group:
        y += m.line
    has_title = any(p.title for p in row.panels)
    has_caption = any(p.caption for p in row.panels)
    top = y + (m.line if has_title else 0)
    if row.label:
        draw.text((m.pad, top + m.panel // 2 - m.font // 2), row.label, font=font, fill=_INK)
    for col, panel in enumerate(row.panels):
        x = m.label_width + m.pad + col * cell
        _centered(draw, x, y, m.panel, panel.title, small, _INK)
        if panel.image is not None:
            pictures.append((panel.image, x, top))
        if has_caption:
            _centered(draw, x, top + m.panel + 2, m.panel, panel.caption, small, _INK)
    bottom = top + m.panel + (m.line if has_caption else 0)
    if row.note:
        span = len(row.panels) * cell - m.pad
        _centered(draw, m.label_width + m.pad, bottom + 2, span, row.note, small, _MUTED)
        bottom += m.line
    return bottom + m.pad


def _bar_height(m: _Metrics) -> int:
    return max(6, m.font * 3 // 4)


def _legend_height(fig: Figure, m: _Metrics) -> int:
    """The colour bars' block under the grid: bar, tick labels, label, padding (0 without bars)."""
    return _bar_height(m) + 2 * m.line + m.pad if fig.colorbars else 0


def bar_pixels(cmap: str, width: int, height: int) -> np.ndarray:
    """A horizontal colour bar (height, width, 3) uint8: the colormap's lookup table, left to right."""
    index = np.round(np.linspace(0.0, 255.0, max(width, 1))).astype(np.intp)
    return np.broadcast_to(colormap_lut(cmap)[index], (height, width, 3))


def _draw_legend(draw: ImageDraw.ImageDraw, fig: Figure, y: int, m: _Metrics,
                 small) -> list[tuple[np.ndarray, int, int]]:
    """Draw the colour bars' text from `y` down; return their pixels as (bar, x, top)."""
    cell, height = m.panel + m.pad, _bar_height(m)
    bars = []
    inset = m.font // 2  # apart from a neighbouring bar's tick labels
    for bar in fig.colorbars:
        x = m.label_width + m.pad + bar.first * cell + inset
        width = (bar.last - bar.first + 1) * cell - m.pad - 2 * inset
        bars.append((bar_pixels(bar.cmap, width, height), x, y))
        left, middle, right = bar.ticks
        tick_y = y + height + 1
        draw.text((x, tick_y), left, font=small, fill=_INK)
        _centered(draw, x, tick_y, width, middle, small, _INK)
        draw.text((x + width - draw.textlength(right, font=small), tick_y), right, font=small, fill=_INK)
        _centered(draw, x, tick_y + m.line, width, bar.label, small, _MUTED)
    return bars


