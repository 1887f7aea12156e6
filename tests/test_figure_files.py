"""Figures a journal accepts: PDF/SVG read back (fonts, text, margins), colour bars, the
difference column and method titles (README "`ncviz compare`: Figs. 1-2")."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pypdf
import pytest
import torch
from PIL import Image

from nc_viz.pair import PairResult, RoleResult
from nc_viz.cams.compute import CamOutput, display_heatmaps
from nc_viz.figures.build import DIFF_CMAP, compare_figure, method_titles, neurons_figure, resolve_colorbar
from nc_viz.figures.raster import ColorBar, Figure, Panel, Row, colormap_lut, compose_array, encode
from nc_viz.figures.style import MapStyle

SVG = "{http://www.w3.org/2000/svg}"


def _grid(rows: int = 2, colorbars=(), label: str = "") -> Figure:
    rng = np.random.default_rng(1)
    return Figure([Row([Panel(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), caption=f"cap{r}{c}")
                        for c in range(3)], label=label) for r in range(rows)],
                  ["Input", "CAM-Baseline", "CAM-Ours"], panel_size=64, colorbars=list(colorbars))


def _page(fig: Figure):
    return pypdf.PdfReader(io.BytesIO(encode(fig, "pdf"))).pages[0]


def _fonts(page) -> list:
    return [font.get_object() for font in page["/Resources"]["/Font"].values()]


def _image_rects(page) -> list[tuple[float, float, float, float]]:
    """(x0, y0, width, height) in points of every image the page's content stream draws."""
    from pypdf.generic import ContentStream

    def mul(m, n):  # m then n, PDF order [a b c d e f]
        a, b, c, d, e, f = m
        return (a * n[0] + b * n[2], a * n[1] + b * n[3], c * n[0] + d * n[2], c * n[1] + d * n[3],
                e * n[0] + f * n[2] + n[4], e * n[1] + f * n[3] + n[5])

    ctm, stack, rects = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0), [], []
    for operands, op in ContentStream(page.get_contents(), None).operations:
        if op == b"q":
            stack.append(ctm)
        elif op == b"Q":
            ctm = stack.pop()
        elif op == b"cm":
            ctm = mul(tuple(float(v) for v in operands), ctm)
        elif op == b"Do":
            xs, ys = (ctm[4], ctm[4] + ctm[0]), (ctm[5], ctm[5] + ctm[3])
            rects.append((min(xs), min(ys), abs(ctm[0]), abs(ctm[3])))
    return rects


# ----------------------------------------------------------------------------- PDF and SVG


def test_pdf_fonts_are_embedded_truetype_never_type3():
    page = _page(_grid(label="Baseline"))
    fonts = _fonts(page)
    assert fonts
    for font in fonts:
        assert font["/Subtype"] in ("/TrueType", "/Type0"), font["/Subtype"]
        descendants = [d.get_object() for d in font.get("/DescendantFonts", [])] or [font]
        for part in descendants:
            assert part["/Subtype"] in ("/TrueType", "/CIDFontType2")
            assert "/FontFile2" in part["/FontDescriptor"].get_object()  # the TrueType program is embedded


def test_pdf_titles_and_captions_are_text():
    text = _page(_grid(label="Baseline")).extract_text()
    for word in ("Input", "CAM-Baseline", "CAM-Ours", "cap00", "cap12", "Baseline"):
        assert word in text


def test_pdf_is_cut_to_the_drawing_with_no_band_between_rows():
    page = _page(_grid(rows=3))
    width, height = float(page.mediabox.width), float(page.mediabox.height)
    rects = _image_rects(page)
    assert len(rects) == 9
    side = rects[0][2]
    assert all(abs(r[2] - side) < 0.01 and abs(r[3] - side) < 0.01 for r in rects)
    assert min(r[0] for r in rects) < 3 and width - max(r[0] + r[2] for r in rects) < 3  # side margins
    rows = sorted({round(r[1], 1) for r in rects}, reverse=True)
    assert max(a - b for a, b in zip(rows, rows[1:])) < side * 1.15  # a caption line between rows, no band
    assert height - (rows[0] + side) < 14 and rows[-1] < 14  # one text line above and below
    assert sum(r[2] * r[3] for r in rects) / (width * height) > 0.75


def test_svg_text_stays_text():
    fig = _grid(label="Baseline", colorbars=[ColorBar("viridis", "what the scale is", 1, 2)])
    root = ET.fromstring(encode(fig, "svg"))
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    for word in ("Input", "CAM-Baseline", "CAM-Ours", "cap00", "Baseline", "what the scale is"):
        assert word in texts
    glyphs = [e for e in root.iter() if (e.get("id") or "").startswith("DejaVu")]
    assert not glyphs  # no text drawn as glyph paths


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_vector_files_with_colorbars_are_byte_identical(fmt):
    fig = _grid(colorbars=[ColorBar("jet", "scale", 1, 2)])
    assert encode(fig, fmt) == encode(fig, fmt)


# ----------------------------------------------------------------------------- colour bars


def _below_panels(fig: Figure) -> np.ndarray:
    """The PNG's pixels under the last row of panels (where the colour bars go)."""
    pixels = compose_array(fig)
    plain = compose_array(Figure(fig.rows, fig.column_titles, fig.panel_size))
    return pixels[plain.shape[0] - 4:]


def _has_colour(pixels: np.ndarray, rgb: np.ndarray) -> bool:
    return bool((pixels.reshape(-1, 3) == rgb).all(axis=1).any())


def test_png_colorbar_shows_both_ends_of_the_colormap_under_the_grid():
    lut = colormap_lut("viridis")
    fig = _grid(colorbars=[ColorBar("viridis", "scale", 1, 2)])
    strip = _below_panels(fig)
    assert strip.shape[0] > 10
    assert _has_colour(strip, lut[0]) and _has_colour(strip, lut[255])
    plain = compose_array(_grid())
    assert not _has_colour(plain[-10:], lut[0])  # no bar, no legend block


def test_pdf_colorbar_has_its_label_and_ticks_as_text():
    text = _page(_grid(colorbars=[ColorBar("jet", "shared per image: 0 = min", 1, 2, ("0", "", "1"))])).extract_text()
    assert "shared per image: 0 = min" in text


def test_colorbar_is_on_by_default_for_the_shared_scale_only():
    assert resolve_colorbar(None, "shared") and not resolve_colorbar(None, "panel")
    assert resolve_colorbar(True, "panel") and not resolve_colorbar(False, "shared")


# ----------------------------------------------------------------------------- figures from results


def _result(baseline_cam: torch.Tensor, nc_cam: torch.Tensor, scale: str = "shared", size: int = 16) -> PairResult:
    """A PairResult of two fake models: `*_cam` (N, h, w) raw maps, heatmaps as ModelPair.run draws them."""
    n = baseline_cam.shape[0]

    def out(cam: torch.Tensor) -> CamOutput:
        logits = torch.zeros(n, 3)
        logits[:, 1] = 2.0
        return CamOutput(logits=logits, target=torch.ones(n, dtype=torch.long), cam=cam)

    heat_b, heat_n = display_heatmaps(baseline_cam, nc_cam, size, scale)
    pictures = np.full((n, size, size, 3), 128, np.uint8)
    return PairResult(torch.zeros(n, 3, size, size), pictures,
                      {"baseline": RoleResult(out(baseline_cam), heat_b), "nc": RoleResult(out(nc_cam), heat_n)})


def test_diff_of_identical_maps_is_the_centre_colour_everywhere():
    cam = torch.randn(2, 4, 4)
    fig = compare_figure(_result(cam, cam.clone()), str, diff=True, style=MapStyle(colorbar=True, scale="shared"))
    centre = colormap_lut(DIFF_CMAP)[128]
    assert list(fig.column_titles) == ["Input", "CAM-Baseline", "CAM-Ours", "NC − Baseline"]
    for row in fig.rows:
        assert len(row.panels) == 4
        assert (row.panels[3].image == centre).all()
    assert [(b.cmap, b.first, b.last) for b in fig.colorbars] == [("jet", 1, 2), (DIFF_CMAP, 3, 3)]
    assert fig.colorbars[1].ticks == ("−1", "0", "+1")


def test_diff_is_nc_minus_baseline_on_the_shared_scale():
    base = torch.zeros(1, 4, 4)
    nc = base.clone()
    nc[0, 0, 0] = 1.0  # NC higher in one corner, equal elsewhere
    result = _result(base, nc, scale="panel")
    fig = compare_figure(result, str, ["In", "B", "N", "Diff"], diff=True, style=MapStyle(scale="panel"))
    assert fig.column_titles[3] == "Diff" and not fig.colorbars  # panel scale: no bar unless asked
    shared_b, shared_n = display_heatmaps(base, nc, 16, "shared")
    diff = (shared_n - shared_b)[0]
    lut = colormap_lut(DIFF_CMAP)
    expected = lut[np.clip(((diff.numpy() + 1) / 2) * 255 + 0.5, 0, 255).astype(np.uint8)]
    np.testing.assert_array_equal(fig.rows[0].panels[3].image, expected)
    corner, far = fig.rows[0].panels[3].image[0, 0].astype(int), fig.rows[0].panels[3].image[-1, -1]
    assert corner[0] > corner[2] + 50  # red where NC is higher
    np.testing.assert_array_equal(far, lut[128])


def test_compare_colorbar_says_which_scale():
    cam = torch.randn(1, 4, 4)
    shared = compare_figure(_result(cam, cam * 2), str, style=MapStyle(scale="shared"))
    assert len(shared.colorbars) == 1 and "shared" in shared.colorbars[0].label
    panel = compare_figure(_result(cam, cam * 2, "panel"), str, style=MapStyle(scale="panel", colorbar=True))
    assert "per panel" in panel.colorbars[0].label
    assert not compare_figure(_result(cam, cam * 2), str, style=MapStyle(scale="shared", colorbar=False)).colorbars


def test_method_other_than_cam_titles_the_map_columns():
    assert method_titles(["Input", "CAM-Baseline", "CAM-Ours"], "cam") == ["Input", "CAM-Baseline", "CAM-Ours"]
    assert method_titles(["Input", "CAM-Baseline", "CAM-Ours"], "gradcam") == [
        "Input", "CAM-Baseline (Grad-CAM)", "CAM-Ours (Grad-CAM)"]
    assert method_titles(["Input", "Grad-CAM++ base", "Ours"], "gradcam++") == [
        "Input", "Grad-CAM++ base", "Ours (Grad-CAM++)"]
    cam = torch.rand(1, 16, 16)
    fig = compare_figure(_result(cam, cam), str, style=MapStyle(method="scorecam"), diff=True)
    assert list(fig.column_titles) == ["Input", "CAM-Baseline (Score-CAM)", "CAM-Ours (Score-CAM)",
                                       "NC − Baseline (Score-CAM)"]


def test_neurons_figure_colorbar_spans_the_neuron_columns(small_pair):
    from nc_viz.pair import load_model_pair

    pair = load_model_pair(*small_pair, device="cpu")
    x = torch.rand(1, 3, 32, 32)
    shared = neurons_figure(pair.run(x, top_k=3, scale="shared"), pair.class_name, style=MapStyle(scale="shared"))
    assert [(b.first, b.last) for b in shared.colorbars] == [(1, 3)] and "shared" in shared.colorbars[0].label
    assert not neurons_figure(pair.run(x, top_k=3), pair.class_name).colorbars
    png = np.asarray(Image.open(io.BytesIO(encode(shared, "png"))))
    lut = colormap_lut("jet")
    legend = png[-100:]  # the bar and its two text lines
    assert _has_colour(legend, lut[0]) and _has_colour(legend, lut[255])


@pytest.mark.parametrize("field, value", [
    ("cmap", "no-such-map"), ("alpha", 1.5), ("alpha", float("nan")), ("alpha", "0.5"), ("scale", "global"),
    ("panel_size", 0), ("panel_size", 12.5), ("colorbar", "yes"), ("method", "no-such-cam"),
    ("font_size", 2.0), ("font_size", True), ("dpi", 10), ("dpi", 150.5),
])
def test_map_style_check_names_the_bad_parameter(field, value):
    from nc_viz.core.errors import ParameterError

    MapStyle().check()  # the defaults are valid
    with pytest.raises(ParameterError) as caught:
        MapStyle(**{field: value}).check()
    assert caught.value.param == field and str(value) in str(caught.value)


def test_map_style_colour_bar_defaults_to_the_shared_scale_and_is_frozen():
    import dataclasses

    assert [MapStyle(scale=s, colorbar=c).show_colorbar for s in ("panel", "shared") for c in (None, True, False)] \
        == [False, True, False, True, True, False]
    with pytest.raises(dataclasses.FrozenInstanceError):
        MapStyle().alpha = 1.0  # type: ignore[misc]


def test_bad_style_is_refused_before_any_model_is_loaded(tmp_path, monkeypatch):
    from nc_viz.core.errors import ParameterError
    from nc_viz.tasks import figures as workflows
    from nc_viz.tasks.batch import BatchOptions

    monkeypatch.setattr(workflows, "load_model_pair", lambda *a, **k: pytest.fail("a model was loaded"))
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(ParameterError, match="alpha"):
        workflows.run_compare([image], tmp_path / "c.png", style=MapStyle(alpha=2.0))
    with pytest.raises(ParameterError, match="panel_size"):
        workflows.run_neurons([image], tmp_path / "n.png", style=MapStyle(panel_size=-3))
    with pytest.raises(ParameterError, match="scale"):
        BatchOptions(style=MapStyle(scale="global")).check()
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "n.png").exists()
