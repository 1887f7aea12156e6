"""Panels and figure grids. Returns images or encoded bytes; writes nothing.

A figure is a grid of panels (picture + title above + caption below), optional column
titles, an optional note under each row and optional colour bars under the grid. PNG is
drawn as arrays: text tiles drawn once by Pillow, pictures resized by torch, so that rendering
hides behind the forward passes;
PDF and SVG go through matplotlib (`figures.vector`) so that text stays text.
"""
from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colour import check_colormap, colorize, colormap_lut, overlay, overlay_many  # noqa: F401 - re-exported
from ..core.errors import ParameterError, UsageError
from .model import ColorBar, Figure, Panel, Row, ellipsize  # noqa: F401 - the figure model, drawn here
from .png import encode_png, thread_buffer

FORMATS = ("png", "pdf", "svg")
# Text is gray on white: drawn on a one-channel canvas (a third of the bytes to move), then
# spread to RGB once.
_BACKGROUND = 255
_INK = 20
_MUTED = 90


# ----------------------------------------------------------------------------- raster


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
    small: int
    label_width: int

    @property
    def line(self) -> int:
        return int(self.font * 1.35)


def _metrics(fig: Figure) -> _Metrics:
    font, small = fig.text_pixels
    has_labels = any(r.label for r in fig.rows)
    label_width = int(font * 0.62 * max([len(r.label) for r in fig.rows] + [0])) + font if has_labels else 0
    return _Metrics(panel=fig.panel_size, pad=max(4, fig.panel_size // 40), font=font, small=small,
                    label_width=label_width)


_MEASURE = ImageDraw.Draw(Image.new("L", (1, 1)))  # measures text only; never drawn on


@lru_cache(maxsize=1024)
def _text_length(text: str, size: int) -> float:
    return _MEASURE.textlength(text, font=_font(size))


@lru_cache(maxsize=1024)
def _fit_text(text: str, width: int, size: int) -> str:
    """Shorten `text` with an ellipsis until it fits `width` pixels."""
    return ellipsize(text, width, lambda shown: _text_length(shown, size))


@dataclass(frozen=True)
class _Text:
    """A text drawn with its top-left corner at (x, y), as Pillow's `ImageDraw.text` places it."""

    x: float
    y: float
    text: str
    size: int
    fill: int


@dataclass
class _Plan:
    """Where everything of a figure goes: canvas size, texts, pictures and colour bars."""

    width: int
    height: int
    texts: list[_Text] = field(default_factory=list)
    pictures: list[tuple[np.ndarray, int, int]] = field(default_factory=list)  # (picture, x, top)
    bars: list[tuple[np.ndarray, int, int]] = field(default_factory=list)      # (pixels, x, top)

    def left(self, x: float, y: int, text: str, size: int, fill: int = _INK) -> None:
        if text:
            self.texts.append(_Text(x, y, text, size, fill))

    def centered(self, x: int, y: int, width: int, text: str, size: int, fill: int = _INK) -> None:
        if text:
            text = _fit_text(text, width, size)
            self.left(x + (width - _text_length(text, size)) / 2, y, text, size, fill)


def _row_height(row: Row, m: _Metrics) -> int:
    has_title = any(p.title for p in row.panels)
    has_caption = any(p.caption for p in row.panels)
    gap = m.line if row.new_group else 0
    return gap + m.panel + m.line * (int(has_title) + int(has_caption) + int(bool(row.note))) + m.pad


def compose(fig: Figure) -> Image.Image:
    """Draw the figure as one RGB image."""
    return Image.fromarray(compose_array(fig))


def compose_array(fig: Figure, reuse: bool = False) -> np.ndarray:
    """Draw the figure as an (H, W, 3) uint8 array (`reuse`: in this thread's buffer, which the
    next call with `reuse` overwrites: for encoding at once).

    Each text that recurs is rendered once by Pillow and kept (`_drawn`); pictures are
    resized in one batched torch call (`_fit_pictures`); the rest is array copies, most of
    them outside Python's lock, so render threads spread over the cores.
    """
    plan = _plan(fig)
    shape = (plan.height, plan.width, 3)
    pixels = thread_buffer("canvas", shape) if reuse else np.empty(shape, np.uint8)
    pixels.fill(_BACKGROUND)
    inked: list[tuple[int, int, int, int]] = []  # the boxes texts have drawn in so far
    for text in plan.texts:
        _paste_text(pixels, text, inked)
    for picture, x, top in _fit_pictures(plan.pictures, fig.panel_size):
        pixels[top:top + picture.shape[0], x:x + picture.shape[1]] = picture
    for bar, x, top in plan.bars:
        pixels[top:top + bar.shape[0], x:x + bar.shape[1]] = bar
    return pixels


def _plan(fig: Figure) -> _Plan:
    """The figure's geometry: where each text, picture and colour bar goes."""
    m = _metrics(fig)
    cell = m.panel + m.pad
    header = m.line + m.pad if any(fig.column_titles) else 0
    width = m.label_width + fig.columns * cell + m.pad
    height = header + sum(_row_height(r, m) for r in fig.rows) + m.pad + _legend_height(fig, m)
    plan = _Plan(width, height)
    for col, title in enumerate(fig.column_titles):
        plan.centered(m.label_width + m.pad + col * cell, m.pad, m.panel, title, m.font)
    y = header + m.pad
    for row in fig.rows:
        y = _plan_row(plan, row, y, m)
    _plan_legend(plan, fig, y, m)
    return plan


def _plan_row(plan: _Plan, row: Row, y: int, m: _Metrics) -> int:
    """Place the row's text and pictures. Returns the next row's y."""
    cell = m.panel + m.pad
    if row.new_group:
        y += m.line
    has_title = any(p.title for p in row.panels)
    has_caption = any(p.caption for p in row.panels)
    top = y + (m.line if has_title else 0)
    plan.left(m.pad, top + m.panel // 2 - m.font // 2, row.label, m.font)
    for col, panel in enumerate(row.panels):
        x = m.label_width + m.pad + col * cell
        plan.centered(x, y, m.panel, panel.title, m.small)
        if panel.image is not None:
            plan.pictures.append((panel.image, x, top))
        if has_caption:
            plan.centered(x, top + m.panel + 2, m.panel, panel.caption, m.small)
    bottom = top + m.panel + (m.line if has_caption else 0)
    if row.note:
        span = len(row.panels) * cell - m.pad
        plan.centered(m.label_width + m.pad, bottom + 2, span, row.note, m.small, _MUTED)
        bottom += m.line
    return bottom + m.pad


def _bar_height(m: _Metrics) -> int:
    return max(6, m.font * 3 // 4)


def _legend_height(fig: Figure, m: _Metrics) -> int:
    """The colour bars' block under the grid: bar, tick labels, label, padding (0 without bars)."""
    return _bar_height(m) + 2 * m.line + m.pad if fig.colorbars else 0


@lru_cache(maxsize=64)
def bar_pixels(cmap: str, width: int, height: int) -> np.ndarray:
    """A horizontal colour bar (height, width, 3) uint8: the colormap's lookup table, left to right."""
    index = np.round(np.linspace(0.0, 255.0, max(width, 1))).astype(np.intp)
    return np.broadcast_to(colormap_lut(cmap)[index], (height, width, 3))


def _plan_legend(plan: _Plan, fig: Figure, y: int, m: _Metrics) -> None:
    """Place the colour bars and their text from `y` down."""
    cell, height = m.panel + m.pad, _bar_height(m)
    inset = m.font // 2  # apart from a neighbouring bar's tick labels
    for bar in fig.colorbars:
        x = m.label_width + m.pad + bar.first * cell + inset
        width = (bar.last - bar.first + 1) * cell - m.pad - 2 * inset
        plan.bars.append((bar_pixels(bar.cmap, width, height), x, y))
        left, middle, right = bar.ticks
        tick_y = y + height + 1
        plan.left(x, tick_y, left, m.small)
        plan.centered(x, tick_y, width, middle, m.small)
        plan.left(x + width - _text_length(right, m.small), tick_y, right, m.small)
        plan.centered(x, tick_y + m.line, width, bar.label, m.small, _MUTED)


@lru_cache(maxsize=4)
def _ink_on_background(fill: int) -> np.ndarray:
    """(256,) uint8: `_paste_text`'s blend of ink `fill` at each coverage over the background."""
    m = np.arange(256, dtype=np.uint16)
    mixed = np.uint16(_BACKGROUND) * (255 - m) + np.uint16(fill) * m + np.uint16(128)
    mixed += mixed >> 8
    return (mixed >> 8).astype(np.uint8)


@dataclass(frozen=True)
class _Drawn:
    """A text as Pillow renders it at a position whose fractional part is the key's `start`:
    its coverage mask (h, w) uint8 and its offset from the integer position."""

    mask: np.ndarray
    dx: int
    dy: int


def _draw_text(text: str, size: int, start: tuple[float, float]) -> _Drawn:
    mask, offset = _font(size).getmask2(text, "L", start=start)
    array = np.asarray(Image.Image()._new(mask))
    array.setflags(write=False)
    return _Drawn(array, offset[0], offset[1])


# Texts that recur (column titles, class names, most captions) are kept drawn, up to
# TEXT_CACHE_BYTES of masks, least recently used dropped first; a text seen for the first time
# (a figure's own note and numbers, mostly seen once) is drawn and not kept. Both bounds keep a
# folder run's memory flat (`benchmarks/memory_flat.py`).
TEXT_CACHE_BYTES = 4 << 20
_TextKey = tuple[str, int, tuple[float, float]]
_KEPT: OrderedDict[_TextKey, _Drawn] = OrderedDict()
_SEEN: OrderedDict[_TextKey, None] = OrderedDict()  # the keys only, of the last 4096 texts drawn
_TEXT_LOCK = threading.Lock()
_kept_bytes = 0


def _drawn(text: str, size: int, start: tuple[float, float]) -> _Drawn:
    """`text` drawn (`_draw_text`), kept when it was drawn before (see TEXT_CACHE_BYTES)."""
    global _kept_bytes
    key = (text, size, start)
    with _TEXT_LOCK:
        kept = _KEPT.get(key)
        if kept is not None:
            _KEPT.move_to_end(key)
            return kept
        again = key in _SEEN
        _SEEN[key] = None
        _SEEN.move_to_end(key)
        if len(_SEEN) > 4096:
            _SEEN.popitem(last=False)
    drawn = _draw_text(text, size, start)
    if again:
        with _TEXT_LOCK:
            if key not in _KEPT:
                _KEPT[key] = drawn
                _kept_bytes += drawn.mask.nbytes
            while _kept_bytes > TEXT_CACHE_BYTES:
                _kept_bytes -= _KEPT.popitem(last=False)[1].mask.nbytes
    return drawn


def _overlaps(box: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in boxes)


def _paste_text(pixels: np.ndarray, text: _Text, inked: list[tuple[int, int, int, int]] | None = None) -> None:
    """Blend the ink of `text` into `pixels` as Pillow's `ImageDraw.text` does on a gray canvas:
    out = (in * (255 - m) + ink * m) / 255, rounded as Pillow rounds (so overlaps match too).

    `inked`: the boxes earlier texts drew in (this one's is added). Where the text's box meets
    none of them the canvas under it is still background, and the blend is a lookup of the mask.
    """
    drawn = _drawn(text.text, text.size, (math.modf(text.x)[0], math.modf(text.y)[0]))
    mask = drawn.mask
    x, y = int(text.x) + drawn.dx, int(text.y) + drawn.dy
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + mask.shape[1], pixels.shape[1]), min(y + mask.shape[0], pixels.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    box = (x0, y0, x1, y1)
    if inked is not None and not _overlaps(box, inked):
        inked.append(box)
        pixels[y0:y1, x0:x1] = _ink_on_background(text.fill)[mask[y0 - y:y1 - y, x0 - x:x1 - x]][:, :, None]
        return
    if inked is not None:
        inked.append(box)
    m = mask[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.uint16)
    mixed = pixels[y0:y1, x0:x1, 0] * (255 - m) + np.uint16(text.fill) * m + np.uint16(128)
    mixed += mixed >> 8
    pixels[y0:y1, x0:x1] = (mixed >> 8).astype(np.uint8)[:, :, None]


def _fit_pictures(pictures: list[tuple[np.ndarray, int, int]],
                  size: int) -> list[tuple[np.ndarray, int, int]]:
    """Each picture at size x size: those of one shape resized together (torch, bilinear with
    Pillow's support for shrinking, within one level of Pillow's `resize`)."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, (picture, _, _) in enumerate(pictures):
        if picture.shape[:2] != (size, size):
            by_shape.setdefault(picture.shape, []).append(i)
    if not by_shape:
        return pictures
    import torch  # here, so that the format checks importing this module stay free of torch

    fitted = list(pictures)
    for shape, indices in by_shape.items():
        stack = torch.from_numpy(np.stack([pictures[i][0] for i in indices])).permute(0, 3, 1, 2)
        resized = torch.nn.functional.interpolate(stack, size=(size, size), mode="bilinear", align_corners=False,
                                                  antialias=True).permute(0, 2, 3, 1).numpy()
        for j, i in enumerate(indices):
            fitted[i] = (resized[j], pictures[i][1], pictures[i][2])
    return fitted


# ----------------------------------------------------------------------------- encoding


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The output format, from the path's suffix or `fmt`; png for a bare name.

    A suffix that names another format than `fmt`, or an unknown suffix without `fmt`, is a
    usage error: a file named .png must hold a PNG.
    """
    fmt = fmt.lower() if fmt else None
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in FORMATS:
        if fmt is not None and fmt != suffix:
            raise ParameterError("fmt", f"{path}: the name says {suffix}, {{param}} says {fmt}; make them agree")
        return suffix
    if suffix and fmt is None:
        raise ParameterError("fmt", f"{path}: .{suffix} is not a format ncviz writes; name the file "
                                    f".png, .pdf or .svg, or pass {{param}}")
    return fmt or "png"


# Figure.meta keys (PNG tEXt keywords) -> the PDF Info / SVG Dublin Core entry that carries them
# (matplotlib takes only those); other keys stay out of vector files.
_VECTOR_KEYS = {"Software": {"pdf": "Creator", "svg": "Creator"},
                "ncviz-provenance": {"pdf": "Subject", "svg": "Description"},
                "Title": {"pdf": "Title", "svg": "Title"}}


def vector_metadata(meta: Mapping[str, str], fmt: str) -> dict[str, str | None]:
    """matplotlib's `metadata=` for a PDF or SVG of a figure with `meta`; no date (same bytes)."""
    out: dict[str, str | None] = {"CreationDate": None} if fmt == "pdf" else {"Date": None}
    out.update({_VECTOR_KEYS[k][fmt]: v for k, v in meta.items() if k in _VECTOR_KEYS})
    return out


def encode(fig: Figure, fmt: str = "png", compress_level: int = 6) -> bytes:
    """Encode the figure; the same figure always gives the same bytes."""
    if fmt == "png":
        return encode_png(compose_array(fig), compress_level, fig.meta, fig.dpi)
    if fmt in ("pdf", "svg"):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):  # user text is literal
            return _encode_vector(fig, fmt)
    raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


_VECTOR_LOCK = threading.Lock()  # matplotlib's rc settings are global: one vector figure at a time


def _encode_vector(fig: Figure, fmt: str) -> bytes:
    """PDF or SVG through matplotlib (`figures.vector`): pictures as images, text as text
    (TrueType/Type 42 fonts in PDF), a tight bounding box, no timestamps."""
    import matplotlib

    from .vector import SAVE_OPTIONS, VECTOR_RC, vector_figure

    buffer = io.BytesIO()
    metadata = vector_metadata(fig.meta, fmt)
    with _VECTOR_LOCK, matplotlib.rc_context(VECTOR_RC):
        vector_figure(fig).savefig(buffer, format=fmt, metadata=metadata, **SAVE_OPTIONS)
    return buffer.getvalue()
