"""Panels and figure grids. Returns images or encoded bytes; writes nothing.

A figure is a grid of panels (picture + title above + caption below), optional column
titles, and an optional note under each row. PNG is drawn with Pillow (cheap per panel,
so that rendering hides behind the forward passes); PDF and SVG go through matplotlib
so that text stays vector.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import UsageError

FORMATS = ("png", "pdf", "svg")
# Text is gray on white: drawn on a one-channel canvas (a third of the bytes to move), then
# spread to RGB once.
_BACKGROUND = 255
_INK = 20
_MUTED = 90


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


@dataclass
class Figure:
    """A grid of rows; `column_titles` head the columns once, at the top."""

    rows: list[Row]
    column_titles: Sequence[str] = ()
    panel_size: int = 224
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> int:
        return max([len(self.column_titles)] + [len(r.panels) for r in self.rows])


# ----------------------------------------------------------------------------- colour


def check_colormap(name: str) -> str:
    """Return `name` if matplotlib knows the colormap, else raise a UsageError."""
    import matplotlib

    if name not in matplotlib.colormaps:
        close = [c for c in sorted(matplotlib.colormaps) if c.lower().startswith(name.lower()[:3])][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown colormap {name!r}{hint}")
    return name


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table for a matplotlib colormap."""
    import matplotlib

    cmap = matplotlib.colormaps[check_colormap(name)]
    rgb = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(rgb * 255.0).astype(np.uint8)


def _lut_index(heat: np.ndarray) -> np.ndarray:
    """Heat in [0, 1] -> colormap row 0..255 (round half up; out-of-range values clip)."""
    scaled = np.asarray(heat, dtype=np.float32) * np.float32(255.0) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def colorize(heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Map a heatmap in [0, 1] (H, W) to RGB uint8 (H, W, 3)."""
    return np.take(colormap_lut(cmap), _lut_index(heat), axis=0)


def overlay(image: np.ndarray, heat: np.ndarray, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """Blend a coloured heatmap over an RGB image: (1 - alpha) * image + alpha * colour."""
    return overlay_many(image, np.asarray(heat)[None], cmap, alpha)[0]


def overlay_many(image: np.ndarray, heats: np.ndarray, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """`overlay` of K heatmaps (K, H, W) over one RGB image (H, W, 3): (K, H, W, 3) uint8.

    Integer arithmetic with alpha in 1/256 steps (rounded): ten times faster than float32
    and within one level of it; alpha 0 gives the image, alpha 1 the colour, exactly. The
    image's share is computed once for all K maps (a row of neuron panels shares one image).
    """
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha {alpha} is out of range: use 0..1")
    if image.shape[:2] != heats.shape[1:3]:
        raise ValueError(f"image {image.shape[:2]} and heatmaps {heats.shape[1:3]} differ in size")
    weight = int(round(alpha * 256))
    base = image.astype(np.uint16) * np.uint16(256 - weight) + np.uint16(128)
    tinted = (colormap_lut(cmap).astype(np.uint16) * np.uint16(weight))
    mixed = np.take(tinted, _lut_index(heats), axis=0)
    mixed += base
    return (mixed >> 8).astype(np.uint8)


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
    label_width: int

    @property
    def line(self) -> int:
        return int(self.font * 1.35)


def _metrics(fig: Figure) -> _Metrics:
    font = max(11, fig.panel_size // 15)
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


def _fit_panel(image: np.ndarray, size: int) -> np.ndarray:
    """The picture at size x size (bilinear when it differs)."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def compose(fig: Figure) -> Image.Image:
    """Draw the figure as one RGB image."""
    return Image.fromarray(compose_array(fig))


def compose_array(fig: Figure) -> np.ndarray:
    """Draw the figure as an (H, W, 3) uint8 array: text with Pillow, pictures copied in place."""
    m = _metrics(fig)
    cell = m.panel + m.pad
    header = m.line + m.pad if any(fig.column_titles) else 0
    width = m.label_width + fig.columns * cell + m.pad
    height = header + sum(_row_height(r, m) for r in fig.rows) + m.pad
    canvas = Image.new("L", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small = _font(m.font), _font(max(10, int(m.font * 0.85)))
    for col, title in enumerate(fig.column_titles):
        _centered(draw, m.label_width + m.pad + col * cell, m.pad, m.panel, title, font, _INK)
    pictures: list[tuple[np.ndarray, int, int]] = []
    y = header + m.pad
    for row in fig.rows:
        y = _draw_row(pictures, draw, row, y, m, font, small)
    pixels = np.repeat(np.asarray(canvas)[:, :, None], 3, axis=2)
    for picture, x, top in pictures:
        pixels[top:top + m.panel, x:x + m.panel] = _fit_panel(picture, m.panel)
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


# ----------------------------------------------------------------------------- encoding


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The output format, from the path's suffix or `fmt` (--format); png for a bare name.

    A suffix that names another format than `fmt`, or an unknown suffix without `fmt`, is a
    usage error: a file named .png must hold a PNG.
    """
    fmt = fmt.lower() if fmt else None
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in FORMATS:
        if fmt is not None and fmt != suffix:
            raise UsageError(f"{path}: the name says {suffix}, --format says {fmt}; make them agree")
        return suffix
    if suffix and fmt is None:
        raise UsageError(f"{path}: .{suffix} is not a format ncviz writes; name the file "
                         f".png, .pdf or .svg, or pass --format")
    return fmt or "png"


def encode(fig: Figure, fmt: str = "png", compress_level: int = 6) -> bytes:
    """Encode the figure; the same figure always gives the same bytes."""
    if fmt == "png":
        return encode_png(compose_array(fig), compress_level)
    if fmt in ("pdf", "svg"):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):  # user text is literal
            return _encode_vector(fig, fmt)
    raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def _draw_vector_panel(ax, panel: Panel, column_title: str) -> None:
    """One panel on matplotlib axes: picture, title (with the column's title), caption."""
    ax.set_axis_off()
    if panel.image is not None:
        ax.imshow(panel.image, interpolation="bilinear")
    title = "\n".join(t for t in (column_title, panel.title) if t)
    if title:
        ax.set_title(title, fontsize=7)
    if panel.caption:
        ax.text(0.5, -0.03, panel.caption, transform=ax.transAxes, ha="center", va="top", fontsize=6)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=1)
def _deflate_module():
    """ISA-L's zlib-compatible deflate (python-isal) when installed, else the standard zlib."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib
    return isal_zlib


def _deflate(data: np.ndarray, level: int) -> bytes:
    """A zlib stream of `data`: levels 0..3 with ISA-L when installed (fast, for folder runs),
    4..9 with the standard zlib (smaller files, for the one-figure commands)."""
    module = _deflate_module()
    if module is not zlib and level > module.ISAL_BEST_COMPRESSION:
        module = zlib
    compressor = module.compressobj(level, zlib.DEFLATED, 15, 9)
    return compressor.compress(data) + compressor.flush()


def encode_png(rgb: np.ndarray, level: int = 1, text: Mapping[str, str] | None = None) -> bytes:
    """A plain 8-bit RGB PNG: the `Up` filter on every row, then deflate at `level`.

    Deflate is ISA-L's when python-isal is installed (a dependency): on a 2149x594 Fig. 3
    figure 5.8 ms against 27 ms for zlib at level 1, and 4% smaller. No time or other
    metadata is written, so the same pixels always give the same bytes on one installation
    (another deflate library may pack them differently; the pixels never change). Lossless.
    `text` adds tEXt chunks (Latin-1 keyword and value), e.g. how the figure was made.
    """
    height, width, channels = rgb.shape
    if channels != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"encode_png takes (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    rows = np.ascontiguousarray(rgb).reshape(height, width * 3)
    lines = np.empty((height, width * 3 + 1), dtype=np.uint8)
    lines[:, 0] = 2  # filter type Up: each byte minus the byte above (zero above the first row)
    lines[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=lines[1:, 1:])
    data = _deflate(lines, level)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    notes = b"".join(_png_chunk(b"tEXt", f"{k}\0{v}".encode("latin-1")) for k, v in sorted((text or {}).items()))
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header) + notes + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_text(path: str | Path) -> dict[str, str]:
    """The tEXt chunks before the image data of a PNG file ({} for anything unreadable)."""
    found: dict[str, str] = {}
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != _PNG_SIGNATURE:
                return found
            while True:
                head = handle.read(8)
                if len(head) < 8:
                    return found
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND") or length > 1 << 16:
                    return found
                body = handle.read(length + 4)[:length]
                if kind == b"tEXt" and b"\0" in body:
                    key, value = body.split(b"\0", 1)
                    found[key.decode("latin-1")] = value.decode("latin-1")
    except OSError:
        return found


def _encode_vector(fig: Figure, fmt: str) -> bytes:
    """PDF or SVG through matplotlib: pictures as images, text as text, no timestamps."""
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    cols, rows = fig.columns, len(fig.rows)
    inch = 1.9
    figure = MplFigure(figsize=(cols * inch + (0.8 if any(r.label for r in fig.rows) else 0),
                                rows * (inch + 0.6) + 0.3))
    grid = figure.add_gridspec(rows, cols, hspace=0.6, wspace=0.05,
                               left=0.1 if any(r.label for r in fig.rows) else 0.02, right=0.98)
    for r, row in enumerate(fig.rows):
        axes = [figure.add_subplot(grid[r, c]) for c in range(len(row.panels))]
        for c, (ax, panel) in enumerate(zip(axes, row.panels)):
            _draw_vector_panel(ax, panel, fig.column_titles[c] if r == 0 and c < len(fig.column_titles) else "")
        if axes and row.label:
            axes[0].text(-0.06, 0.5, row.label, transform=axes[0].transAxes, ha="right", va="center", fontsize=8)
        if axes and row.note:
            left, right = axes[0].get_position(), axes[-1].get_position()
            y = left.y0 - 0.22 * left.height
            figure.text((left.x0 + right.x1) / 2, y, row.note, fontsize=6, ha="center", va="top", color="0.35")
    buffer = io.BytesIO()
    metadata = {"CreationDate": None} if fmt == "pdf" else {"Date": None}
    with matplotlib.rc_context({"svg.hashsalt": "ncviz", "pdf.compression": 6}):
        figure.savefig(buffer, format=fmt, metadata=metadata, dpi=150)
    return buffer.getvalue()
