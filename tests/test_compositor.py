"""The array compositor (`figures.raster.compose_array`) against the Pillow drawing it replaced
(`oracle_raster`): same size, the same text and colour bars pixel for pixel, and pictures
within one colour level on at least 99.9% of the pixels."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import oracle_raster
from nc_viz.figures import png, raster
from nc_viz.figures.build import compare_figure, neurons_figure, neuron_diversity
from nc_viz.figures.model import ColorBar, Figure, Panel, Row
from nc_viz.figures.style import MapStyle
from nc_viz.pair import PairSpec, load_model_pair


@pytest.fixture(scope="module")
def demo_results():
    """The shipped demo pair on four smooth random 64-px inputs: plain and neuron results."""
    pair = load_model_pair(PairSpec(device="cpu"))
    size = pair.preprocess.input_size
    coarse = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.25
    target = pair.parse_target(None)
    plain = pair.run(x, target, "cam", "shared", 0, "contribution", "fp32")
    neurons = pair.run(x, target, "cam", "panel", 8, "contribution", "fp32")
    return pair, plain, neurons


def _figures(demo_results) -> dict[str, Figure]:
    pair, plain, neurons = demo_results
    names = ["a_rather_long_file_name_that_needs_an_ellipsis.jpg", "b.png", "ünïcode.jpg", "d.jpg"]
    shared = MapStyle(scale="shared", colorbar=True)
    return {
        "compare 224 px, diff, colour bars": compare_figure(plain, pair.class_name, style=MapStyle(
            scale="shared", colorbar=True, panel_size=224), names=names, diff=True),
        "compare 192 px (3x)": compare_figure(plain, pair.class_name, style=shared, names=names),
        "compare 48 px (shrunk)": compare_figure(plain, pair.class_name, style=MapStyle(panel_size=48), names=names),
        "neurons 224 px, diversity": neurons_figure(neurons, pair.class_name, 8, style=MapStyle(
            panel_size=224, colorbar=True), names=names, diversity=neuron_diversity(neurons)),
        "neurons 100 px": neurons_figure(neurons, pair.class_name, 3, style=MapStyle(panel_size=100)),
    }


def _picture_mask(fig: Figure) -> np.ndarray:
    """True where the compositor puts a picture (the only pixels allowed to differ)."""
    plan = raster._plan(fig)
    mask = np.zeros((plan.height, plan.width), bool)
    for _picture, x, top in plan.pictures:
        mask[top:top + fig.panel_size, x:x + fig.panel_size] = True
    return mask


def test_the_compositor_draws_what_the_pillow_renderer_drew(demo_results):
    for label, fig in _figures(demo_results).items():
        new, old = raster.compose_array(fig), oracle_raster.compose_array(fig)
        assert new.shape == old.shape, label
        pictures = _picture_mask(fig)
        assert pictures.any() and (~pictures).any(), label
        # text, titles, notes, colour bars, background: identical
        np.testing.assert_array_equal(new[~pictures], old[~pictures], err_msg=label)
        assert (old[~pictures] < 200).any(), f"{label}: the oracle drew no text"
        # pictures: within one colour level on at least 99.9% of the pixels
        diff = np.abs(new.astype(np.int16) - old.astype(np.int16)).max(axis=2)
        assert (diff[pictures] <= 1).mean() >= 0.999, label
        assert diff.max() <= 3, label


def test_a_picture_at_the_panel_size_is_copied_exactly():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    fig = Figure([Row([Panel(picture, title="t", caption="c")])], column_titles=["col"], panel_size=40)
    np.testing.assert_array_equal(raster.compose_array(fig), oracle_raster.compose_array(fig))


def test_pictures_of_different_sizes_in_one_figure():
    rng = np.random.default_rng(1)
    panels = [Panel(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((30, 30), (50, 20), (30, 30))]
    fig = Figure([Row(panels)], panel_size=60)
    new, old = raster.compose_array(fig), oracle_raster.compose_array(fig)
    assert new.shape == old.shape
    assert (np.abs(new.astype(int) - old.astype(int)) <= 1).mean() >= 0.999


def test_text_outside_the_canvas_is_clipped_not_wrapped():
    fig = Figure([Row([Panel(None)], label="a label")], column_titles=["x" * 200], panel_size=32,
                 colorbars=[ColorBar("viridis", "label", 0, 0, ("low", "mid", "a very long right tick"))])
    new, old = raster.compose_array(fig), oracle_raster.compose_array(fig)
    np.testing.assert_array_equal(new, old)


def test_reruns_and_threads_give_the_same_bytes(demo_results):
    figures = list(_figures(demo_results).values())
    once = [png.encode_png(raster.compose_array(f), 1) for f in figures]
    with ThreadPoolExecutor(4) as pool:
        again = list(pool.map(lambda f: png.encode_png(raster.compose_array(f), 1), figures * 3))
    assert again == once * 3


def test_a_reused_buffer_keeps_nothing_of_the_figure_before(demo_results):
    """Folder runs compose into one buffer per thread and shape: a figure drawn after another
    of the same shape is the same as one drawn into a fresh array, and so are its PNG bytes."""
    figures = list(_figures(demo_results).values())
    pair, plain, _ = demo_results
    other = compare_figure(plain.images(1), pair.class_name, style=MapStyle(panel_size=224), names=["x.jpg"])
    first = compare_figure(plain.images(0), pair.class_name, style=MapStyle(panel_size=224), names=["y.jpg"])
    fresh = raster.compose_array(first)
    raster.compose_array(other, reuse=True)
    np.testing.assert_array_equal(raster.compose_array(first, reuse=True), fresh)
    expected = [png.encode_png(raster.compose_array(f), 1) for f in figures]
    assert [png.encode_png(raster.compose_array(f, reuse=True), 1) for f in figures[::-1]] == expected[::-1]


def test_render_threads_reusing_their_buffers_give_the_bytes_of_fresh_arrays(demo_results):
    figures = list(_figures(demo_results).values())
    expected = [png.encode_png(raster.compose_array(f), 1) for f in figures] * 4
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda f: png.encode_png(raster.compose_array(f, reuse=True), 1), figures * 4))
    assert got == expected


def test_a_folder_run_leaves_the_torch_thread_count_as_it_was(tmp_path, small_pair):
    """Render threads take one torch thread each; afterwards threads started later get the count
    the process had (torch keeps the last count set for new threads)."""
    import threading

    from conftest import save_image
    from nc_viz.tasks.batch.options import BatchOptions
    from nc_viz.tasks.batch.runner import run_batch

    for i in range(3):
        save_image(tmp_path / "in" / f"{i}.png", seed=i)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1, whatever OMP_NUM_THREADS the tests run with
    try:
        run_batch(tmp_path / "in", tmp_path / "out", pair_spec=PairSpec(*small_pair, device="cpu"),
                  options=BatchOptions(workers=0, render_threads=2))
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert torch.get_num_threads() == 2 and seen == [2]
    finally:
        torch.set_num_threads(before)


def test_overlapping_texts_blend_as_pillow_draws_them():
    """A text drawn where an earlier one inked is blended onto that ink, not pasted as the
    background tile: the canvas matches Pillow's `ImageDraw.text` drawing both, in order."""
    from PIL import Image, ImageDraw

    texts = [raster._Text(3.4, 2.0, "overlapping ink", 18, raster._INK),
             raster._Text(9.7, 8.5, "drawn twice here", 18, raster._MUTED),
             raster._Text(60.0, 30.0, "apart", 12, raster._INK)]
    pixels = np.full((48, 200, 3), raster._BACKGROUND, np.uint8)
    inked: list = []
    for text in texts:
        raster._paste_text(pixels, text, inked)
    canvas = Image.new("L", (200, 48), raster._BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for text in texts:
        draw.text((text.x, text.y), text.text, fill=text.fill, font=raster._font(text.size))
    expected = np.asarray(canvas)
    assert (pixels[:, :, 0] != raster._BACKGROUND).any()
    np.testing.assert_array_equal(pixels, np.repeat(expected[:, :, None], 3, axis=2))
