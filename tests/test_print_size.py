"""Figures at print size: text sizes in points at the figure's natural size (`--font-size`), a
PNG's pixels per inch (`--dpi`, written as pHYs), `--no-captions`, and `compare --row-labels`."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import pair_args, run, save_image
from nc_viz.figures.model import Figure, Panel, Row
from nc_viz.figures.vector import vector_figure


def _pdf_text(path) -> str:
    import pypdf

    return pypdf.PdfReader(path).pages[0].extract_text()


def _sizes(fig: Figure) -> set[float]:
    """The font sizes of every text of the figure's PDF/SVG drawing, in points."""
    import matplotlib

    from nc_viz.figures.vector import VECTOR_RC

    with matplotlib.rc_context(VECTOR_RC):
        drawn = vector_figure(fig)
    return {round(t.get_fontsize(), 2) for t in drawn.texts if t.get_text()}


def _figure(points: float | None, dpi: int = 150) -> Figure:
    picture = np.zeros((32, 32, 3), np.uint8)
    return Figure([Row([Panel(picture, title="t", caption="c")], label="row")], column_titles=["Input"],
                  panel_size=224, font_points=points, dpi=dpi)


def test_text_sizes_are_points_at_the_natural_size():
    # the default figure: 10-pt titles, 8.5-pt text on 1.6-inch panels (a 3-panel compare figure is
    # 4.9 inches wide: in a 3.3-inch column the text is still 6.7 and 5.7 pt)
    from nc_viz.figures.style import MapStyle

    assert MapStyle().font_size == 10.0 and MapStyle().dpi == 150
    assert _sizes(_figure(10.0)) == {10.0, 8.5}
    assert _sizes(_figure(14.0)) == {14.0, 11.9}
    # a PNG: points at its dpi (14 pt at 300 dpi = 58 px; 0.85 of it for the rest)
    assert _figure(14.0, 300).text_pixels == (58, 49)
    assert _figure(10.0).text_pixels == (21, 18)


def test_font_size_and_dpi_reach_the_files(small_pair, rgb_image, tmp_path, capsys):
    code, _, err = run(["compare", rgb_image, *pair_args(small_pair), "-o", tmp_path / "a.png", "--dpi", "300",
                        "--font-size", "14"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "a.png") as img:
        assert img.info["dpi"] == pytest.approx((300, 300), abs=0.05)
        big = img.size
    code, _, err = run(["compare", rgb_image, *pair_args(small_pair), "-o", tmp_path / "b.png", "--font-size", "6"],
                       capsys)
    assert code == 0, err
    with Image.open(tmp_path / "b.png") as img:
        assert img.info["dpi"] == pytest.approx((150, 150), abs=0.05)
        assert img.size[0] == big[0] and img.size[1] < big[1]  # same panels, shorter text lines
    for bad in (["--font-size", "2"], ["--dpi", "10"]):
        code, _, err = run(["compare", rgb_image, *pair_args(small_pair), "-o", tmp_path / "c.png", *bad], capsys)
        assert code == 2 and bad[0] in err


def test_no_captions_leaves_out_names_and_predictions(small_pair, rgb_image, tmp_path, capsys):
    args = ["compare", rgb_image, *pair_args(small_pair)]
    assert run([*args, "-o", tmp_path / "a.pdf"], capsys)[0] == 0
    assert rgb_image.name in _pdf_text(tmp_path / "a.pdf") and "%" in _pdf_text(tmp_path / "a.pdf")
    assert run([*args, "-o", tmp_path / "b.pdf", "--no-captions"], capsys)[0] == 0
    text = _pdf_text(tmp_path / "b.pdf")
    assert rgb_image.name not in text and "%" not in text and "CAM-Ours" in text
    code, _, err = run(["neurons", rgb_image, *pair_args(small_pair), "--top", "2", "--no-captions",
                        "-o", tmp_path / "n.pdf"], capsys)
    assert code == 0, err
    text = _pdf_text(tmp_path / "n.pdf")
    assert rgb_image.name not in text and "#" in text  # the neuron titles stay


def test_compare_row_labels(small_pair, tmp_path, capsys):
    images = [save_image(tmp_path / f"{i}.png", seed=i) for i in range(2)]
    code, _, err = run(["compare", *images, *pair_args(small_pair), "-o", tmp_path / "a.pdf",
                        "--row-labels", "(a),(b)"], capsys)
    assert code == 0, err
    text = _pdf_text(tmp_path / "a.pdf")
    assert "(a)" in text and "(b)" in text
    code, _, err = run(["compare", *images, *pair_args(small_pair), "-o", tmp_path / "b.pdf",
                        "--row-labels", "(a)"], capsys)
    assert code == 2 and "--row-labels" in err and "one comma-separated label per image (2), got 1" in err
    assert not (tmp_path / "b.pdf").exists()


def test_batch_redraws_a_figure_of_another_font_size(small_pair, tmp_path, capsys):
    from nc_viz.figures.png import png_text

    save_image(tmp_path / "in" / "a.png")
    args = ["batch", tmp_path / "in", "-o", tmp_path / "out", *pair_args(small_pair), "--workers", "0"]
    assert run(args, capsys)[0] == 0
    first = png_text(tmp_path / "out" / "a.png")["ncviz-settings"]
    assert run([*args, "--skip-existing", "--font-size", "12"], capsys)[0] == 0
    assert png_text(tmp_path / "out" / "a.png")["ncviz-settings"] != first
    with Image.open(io.BytesIO((tmp_path / "out" / "a.png").read_bytes())) as img:
        assert img.info["dpi"] == pytest.approx((150, 150), abs=0.05)
