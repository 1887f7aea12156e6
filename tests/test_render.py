"""Figure layout, colour mapping and encoding."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from nc_viz.core.errors import UsageError
from nc_viz.figures.raster import Figure, Panel, Row, colorize, compose, encode, format_for, overlay
from conftest import assert_pdf, assert_svg


def _panel(value: int, title: str = "", caption: str = "") -> Panel:
    return Panel(np.full((32, 32, 3), value, np.uint8), title, caption)


def test_colorize_uses_the_matplotlib_colormap():
    import matplotlib

    heat = np.array([[0.0, 1.0]])
    rgb = colorize(heat, "viridis")
    expected = np.round(np.array(matplotlib.colormaps["viridis"]([0.0, 1.0]))[:, :3] * 255)
    np.testing.assert_array_equal(rgb[0], expected.astype(np.uint8))


def test_overlay_blends_by_alpha():
    img = np.zeros((2, 2, 3), np.uint8)
    heat = np.ones((2, 2))
    assert (overlay(img, heat, "gray", 0.0) == 0).all()
    assert (overlay(img, heat, "gray", 1.0) == 255).all()
    assert (overlay(img, heat, "gray", 0.5) == 128).all()


def test_unknown_colormap_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown colormap"):
        colorize(np.zeros((2, 2)), "no-such-map")


def test_grid_size_follows_rows_and_columns():
    fig = Figure([Row([_panel(0), _panel(100), _panel(200)]) for _ in range(2)],
                 column_titles=["a", "b", "c"], panel_size=64)
    img = compose(fig)
    one_row = compose(Figure([Row([_panel(0), _panel(100), _panel(200)])], ["a", "b", "c"], panel_size=64))
    assert img.width == one_row.width
    assert img.height > one_row.height + 64
    assert img.width >= 3 * 64


def test_panels_are_drawn_where_expected():
    fig = Figure([Row([_panel(0), _panel(255)])], panel_size=40)
    arr = np.asarray(compose(fig))
    black = (arr == 0).all(axis=2)
    assert black.sum() == 40 * 40  # the black panel, whole, and nothing else black
    ys, xs = np.nonzero(black)
    assert ys.max() - ys.min() == 39 and xs.max() - xs.min() == 39
    assert (arr[ys.min():ys.max() + 1, xs.max() + 1:] == 255).all()  # white panel and background


RED, BLUE = (200, 40, 40), (40, 40, 200)


def _two_colour_figure() -> Figure:
    """A red and a blue panel with titles, captions, column titles, a row label and a note."""
    red, blue = (np.broadcast_to(np.array(c, np.uint8), (32, 32, 3)).copy() for c in (RED, BLUE))
    row = Row([Panel(red, "red title", "red caption"), Panel(blue, "blue title", "blue caption")],
              label="Baseline", note="a row note")
    return Figure([row], ["first column", "second column"], 48)


def _block_of(pixels: np.ndarray, colour) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the pixels of exactly `colour`; they must form one full block."""
    ys, xs = np.nonzero((pixels == np.array(colour, np.uint8)).all(axis=2))
    assert len(ys), f"no pixel of colour {colour}"
    top, left, h, w = ys.min(), xs.min(), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert len(ys) == h * w, f"colour {colour} is not one solid block"
    return int(top), int(left), int(h), int(w)


def test_png_encoding_is_deterministic_and_decodes_to_the_figure():
    fig = _two_colour_figure()
    a, b = encode(fig, "png"), encode(fig, "png")
    assert a == b
    with Image.open(io.BytesIO(a)) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        pixels = np.asarray(img)
    red, blue = _block_of(pixels, RED), _block_of(pixels, BLUE)
    assert red[2:] == blue[2:] == (48, 48)                     # each picture whole, at the panel size
    assert red[0] == blue[0] and blue[1] > red[1] + 48         # side by side, red first
    top, left = red[0], min(red[1], blue[1])
    gray = (pixels == pixels[..., :1]).all(axis=2)
    ink = gray & (pixels[..., 0] < 128)                        # dark gray text on white
    assert ink[:top, left:].any()                              # titles above
    assert ink[top + 48:, left:].any()                         # captions and the note below
    assert ink[top:top + 48, :left].any()                      # the row label on the left
    assert not ink[top:top + 48, left:].any()                  # nothing drawn over the pictures


def _svg_pictures(data: bytes) -> list[np.ndarray]:
    import base64
    import xml.etree.ElementTree as ET

    pictures = []
    for node in ET.fromstring(data).iter("{http://www.w3.org/2000/svg}image"):
        href = node.get("{http://www.w3.org/1999/xlink}href") or node.get("href")
        assert href.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))) as img:
            pictures.append(np.asarray(img.convert("RGB")))
    return pictures


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_vector_formats_are_deterministic_and_hold_the_figure(fmt):
    fig = _two_colour_figure()
    a, b = encode(fig, fmt), encode(fig, fmt)
    assert a == b
    if fmt == "pdf":
        assert_pdf(a)
        assert len(re.findall(rb"/Type\s*/Page\b", a)) == 1           # one page
        assert len(re.findall(rb"/Subtype\s*/Image\b", a)) == 2       # one picture per panel
        return
    assert_svg(a)
    pictures = _svg_pictures(a)
    assert len(pictures) == 2
    for picture, colour in zip(pictures, (RED, BLUE)):  # drawn in order, each its own colour
        assert (np.abs(picture.astype(int) - colour).max(axis=2) <= 2).mean() > 0.95
    text = a.decode("utf-8")
    for words in ("red title", "red caption", "blue title", "blue caption", "first column", "second column",
                  "Baseline", "a row note"):
        assert words in text, words


def test_format_comes_from_the_suffix_or_format_and_they_must_agree():
    assert format_for("fig.PDF") == "pdf"
    assert format_for("fig.svg", "SVG") == "svg"
    assert format_for("figure") == "png"
    assert format_for("figure", "pdf") == "pdf"
    assert format_for("fig.jpg", "png") == "png"  # asked for explicitly
    for path, fmt in [("fig.png", "svg"), ("fig.jpg", None), ("notes.txt", None), ("x.png", "gif")]:
        with pytest.raises(UsageError):
            format_for(path, fmt)


def test_png_readers_share_one_chunk_walker_and_agree_on_damaged_files(tmp_path):
    """`png_intact` and `png_text` read PNG chunks through `figures.png.chunks` alone; on whole,
    cut, corrupted and padded files they answer as a PNG decoder's CRC check and the tEXt
    chunks written say."""
    import struct
    import zlib
    from pathlib import Path

    from nc_viz.figures import png as png_module
    from nc_viz.figures.png import png_intact
    from nc_viz.figures.png import encode_png, png_text

    sources = sorted((Path(png_module.__file__).parent.parent).rglob("*.py"))
    walkers = [str(p) for p in sources if re.search(r"unpack\(\s*\">I4s\"", p.read_text(encoding="utf-8"))]
    assert walkers == [png_module.__file__]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    good = encode_png(rgb, 1, {"ncviz-settings": "abc", "k": "v"})
    idat = good.index(b"IDAT") + 6
    bad_idat = bytearray(good)
    bad_idat[idat] ^= 0xFF
    bad_text = bytearray(good)
    bad_text[good.index(b"abc")] = ord("x")
    head = good[:good.index(b"IDAT") - 4]
    big = head[:8] + chunk(b"tEXt", b"big\0" + b"x" * (1 << 16)) + head[8:] + good[len(head):]
    cases = {  # name: (bytes, intact, text)
        "good": (good, True, {"ncviz-settings": "abc", "k": "v"}),
        "idat damaged": (bytes(bad_idat), False, {"ncviz-settings": "abc", "k": "v"}),
        "text damaged": (bytes(bad_text), False, {"ncviz-settings": "xbc", "k": "v"}),
        "padded": (good + b"\0", False, {"ncviz-settings": "abc", "k": "v"}),
        "cut before IEND": (good[:-12], False, {"ncviz-settings": "abc", "k": "v"}),
        "cut in the text": (good[:good.index(b"abc") + 1], False, {"k": "v", "ncviz-settings": "a"}),
        "no image data": (head, False, {"ncviz-settings": "abc", "k": "v"}),
        "a chunk over 64 KiB first": (big, True, {}),
        "not a png": (b"GIF89a" + good[6:], False, {}),
        "empty": (b"", False, {}),
    }
    for name, (data, intact, text) in cases.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        assert png_intact(path) is intact, name
        assert png_text(path) == text, name
        if intact:
            with Image.open(path) as img:
                img.load()
                assert np.array_equal(np.asarray(img), rgb)
    assert png_intact(tmp_path / "missing.png") is False and png_text(tmp_path / "missing.png") == {}
