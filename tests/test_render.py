"""Figure layout, colour mapping and encoding."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nc_viz.errors import UsageError
from nc_viz.render import Figure, Panel, Row, colorize, compose, encode, format_for, overlay


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


def test_png_encoding_is_deterministic_and_decodes():
    fig = Figure([Row([_panel(10, "t", "c"), _panel(20, "u", "d")], note="note")], ["x", "y"], 48)
    a, b = encode(fig, "png"), encode(fig, "png")
    assert a == b
    assert Image.open(io.BytesIO(a)).format == "PNG"


@pytest.mark.parametrize("fmt, magic", [("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_vector_formats_are_deterministic(fmt, magic):
    fig = Figure([Row([_panel(10, "t", "c"), _panel(20)], label="Baseline", note="n")], ["x", "y"], 48)
    a, b = encode(fig, fmt), encode(fig, fmt)
    assert a.startswith(magic) and a == b


def test_format_comes_from_the_suffix_or_format_and_they_must_agree():
    assert format_for("fig.PDF") == "pdf"
    assert format_for("fig.svg", "SVG") == "svg"
    assert format_for("figure") == "png"
    assert format_for("figure", "pdf") == "pdf"
    assert format_for("fig.jpg", "png") == "png"  # asked for explicitly
    for path, fmt in [("fig.png", "svg"), ("fig.jpg", None), ("notes.txt", None), ("x.png", "gif")]:
        with pytest.raises(UsageError):
            format_for(path, fmt)
