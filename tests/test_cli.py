"""The command line as a user meets it: help, errors, exit codes, `compare` end to end."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nc_viz.cli import main
from conftest import assert_vector_file, run


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["compare", "--help"], ["models", "--help"]])
def test_help_and_version_do_not_import_torch(args):
    code = ("import sys\nfrom nc_viz.cli import main\nrc = main(%r)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)" % args)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_ncviz_alone_shows_the_help(capsys):
    code = main([])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Usage: ncviz" in text and "\n  compare" in text and not text.startswith("error:")
    assert code in (0, 2)  # click >= 8.2 exits 2 here, older click 0


def test_version_prints_the_package_version(capsys):
    from nc_viz import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and __version__ in out


def test_compare_writes_a_figure_and_maps(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    out = tmp_path / "fig.png"
    maps = tmp_path / "maps.npz"
    second = tmp_path / "second.jpg"
    Image.open(rgb_image).convert("L").save(second)
    code, stdout, err = run(["compare", rgb_image, second, "--baseline", base, "--nc", nc, "-o", out,
                             "--save-maps", maps, "--device", "cpu"], capsys)
    assert code == 0, err
    assert str(out) in stdout
    fig = Image.open(out)
    assert fig.format == "PNG" and fig.height > 2 * 192  # two rows of panels
    data = np.load(maps)
    assert data["input"].shape == (2, 3, 32, 32) and data["input"].dtype == np.float32
    assert data["baseline_logits"].shape == (2, 5)
    assert data["baseline_class"].dtype == np.int64
    assert data["nc_cam"].shape == (2, 8, 8)
    assert data["baseline_heatmap"].shape == (2, 32, 32)
    assert 0.0 <= data["nc_heatmap"].min() and data["nc_heatmap"].max() <= 1.0
    assert (data["baseline_class"] == data["baseline_logits"].argmax(1)).all()


def hand_cams(checkpoint, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, CAM of the argmax class) by a hook of our own: M_c = sum_k w_k^c f_k (Zhou et al., CVPR 2016)."""
    from nc_viz.models.checkpoints import load_checkpoint

    model = load_checkpoint(checkpoint, device="cpu").model
    seen = []
    handle = model.avgpool.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    w = model.fc.weight.detach()[logits.argmax(1)]                       # (N, C)
    return logits, (w[:, :, None, None] * seen[0]).sum(1)


def model_input(picture: np.ndarray, checkpoint) -> torch.Tensor:
    """What the model sees of a picture already at its input size: (x / 255 - mean) / std."""
    meta = torch.load(checkpoint, weights_only=True)["meta"]
    x = torch.from_numpy(picture).permute(2, 0, 1).float()[None] / 255.0
    return (x - torch.tensor(meta["mean"]).view(3, 1, 1)) / torch.tensor(meta["std"]).view(3, 1, 1)


def test_compare_maps_are_the_cams_of_the_predicted_class(small_pair, tmp_path, capsys):
    """Both models' saved maps equal a CAM by hand of each model's argmax class."""
    pictures = np.random.default_rng(11).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(tmp_path / f"in{i}.png")
        Image.fromarray(picture).save(paths[-1])
    maps = tmp_path / "maps.npz"
    code, _, err = run(["compare", *paths, "--baseline", small_pair[0], "--nc", small_pair[1],
                        "-o", tmp_path / "f.png", "--save-maps", maps, "--device", "cpu"], capsys)
    assert code == 0, err
    data = np.load(maps)
    for side, checkpoint in zip(("baseline", "nc"), small_pair):
        x = torch.cat([model_input(p, checkpoint) for p in pictures])
        logits, cam = hand_cams(checkpoint, x)
        assert data[f"{side}_class"].tolist() == logits.argmax(1).tolist()
        np.testing.assert_allclose(data[f"{side}_logits"], logits.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(data[f"{side}_cam"], cam.numpy(), rtol=1e-5, atol=1e-5)


def _cool_panels(figure: np.ndarray, size: int) -> list[np.ndarray]:
    """The size x size blocks drawn in matplotlib's 'cool' colormap at alpha 1, left to right.

    'cool' is (x, 1 - x, 1): R + G = 255 and B = 255 on every level, which no gray pixel (text,
    background, a gray input picture) has. Its red channel is the drawn colormap level 0..255.
    """
    rgb = figure.astype(np.int64)
    cool = (rgb[..., 2] == 255) & (rgb[..., 0] + rgb[..., 1] == 255)
    sums = np.pad(cool, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    full = (sums[size:, size:] - sums[:-size, size:] - sums[size:, :-size] + sums[:-size, :-size]) == size * size
    corners = [(y, x) for y, x in zip(*np.nonzero(full))
               if (y == 0 or not full[y - 1, x]) and (x == 0 or not full[y, x - 1])]
    return [figure[y:y + size, x:x + size, 0].astype(np.int64) for y, x in sorted(corners, key=lambda c: c[1])]


@pytest.mark.parametrize("scale", ["shared", "panel"])
def test_drawn_cams_of_maps_a_known_factor_apart_follow_the_scale(small_pair, tmp_path, capsys, scale):
    """The second model is the baseline with its fc layer doubled, so its CAM is exactly twice the
    baseline's. On `--scale shared` the figure shows that factor (the NC panel spans twice the
    levels of the baseline panel); per panel both are stretched to the full range alike."""
    base = small_pair[0]
    payload = torch.load(base, weights_only=True)
    for key in ("fc.weight", "fc.bias"):
        payload["state_dict"][key] = payload["state_dict"][key] * 2
    double = tmp_path / "double.pt"
    torch.save(payload, double)
    gray = np.repeat(np.random.default_rng(5).integers(0, 256, (32, 32, 1), dtype=np.uint8), 3, axis=2)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = tmp_path / "fig.png"
    code, _, err = run(["compare", tmp_path / "gray.png", "--baseline", base, "--nc", double, "--nc-arch",
                        "resnet20", "-o", out, "--scale", scale, "--cmap", "cool", "--alpha", "1",
                        "--panel-size", "32", "--device", "cpu"], capsys)
    assert code == 0, err
    panels = _cool_panels(np.asarray(Image.open(out).convert("RGB")), 32)
    assert len(panels) == 2, "expected the two CAM panels, baseline then NC"
    # by hand: the CAM, bilinear to the panel (README "The maths, briefly"), min-max per panel or over both
    _, cam = hand_cams(base, model_input(gray, base))
    maps = F.interpolate(torch.stack([cam, 2 * cam], 1), size=(32, 32), mode="bilinear",
                         align_corners=False)[0].double().numpy()
    if scale == "shared":
        lo, hi = maps.min(), maps.max()
        heat = (maps - lo) / (hi - lo)
    else:
        lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
        heat = (maps - lo) / (hi - lo)
    levels = np.floor(heat * 255 + 0.5)
    for drawn, expected in zip(panels, levels):
        assert np.abs(drawn - expected).max() <= 1
    spans = [int(p.max() - p.min()) for p in panels]
    if scale == "shared":
        assert spans[0] > 60 and abs(spans[1] - 2 * spans[0]) <= 2, spans  # the factor, to a level
    else:
        assert spans == [255, 255] and np.abs(panels[0] - panels[1]).max() <= 1


def test_compare_output_bytes_are_reproducible(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    outs = [tmp_path / "a.png", tmp_path / "b.png"]
    for out in outs:
        assert run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", out], capsys)[0] == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_compare_vector_formats(small_pair, rgb_image, tmp_path, capsys, fmt):
    base, nc = small_pair
    out = tmp_path / f"fig.{fmt}"
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", out], capsys)
    assert code == 0, err
    data = out.read_bytes()
    assert_vector_file(data, fmt)  # each format its own signature: a PDF header and trailer, an SVG root element


def test_compare_target_by_name(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    maps = tmp_path / "m.npz"
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png",
                        "--target", "star", "--save-maps", maps], capsys)
    assert code == 0, err
    assert np.load(maps)["nc_class"].tolist() == [3]


def test_bad_image_is_one_line_and_exit_1(small_pair, tmp_path, capsys):
    base, nc = small_pair
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG garbage")
    out = tmp_path / "fig.png"
    code, _, err = run(["compare", bad, "--baseline", base, "--nc", nc, "-o", out], capsys)
    assert code == 1
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and "broken.png" in err
    assert "Traceback" not in err and not out.exists()


def test_debug_shows_the_traceback(small_pair, tmp_path, capsys):
    base, nc = small_pair
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"nope")
    code, _, err = run(["--debug", "compare", bad, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png"], capsys)
    assert code == 1 and "Traceback" in err


def test_missing_path_and_unknown_option_are_one_line_usage_errors(tmp_path, capsys):
    for args in (["compare", tmp_path / "nope.jpg"], ["compare", "--no-such-option"]):
        code, _, err = run(args, capsys)
        assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0, err
        assert "ncviz compare --help" in err
    assert "nope.jpg" in run(["compare", tmp_path / "nope.jpg"], capsys)[2]


@pytest.mark.parametrize("option", ["-o", "--save-maps"])
def test_an_output_that_cannot_be_written_fails_first_naming_it(small_pair, rgb_image, tmp_path, capsys,
                                                                 monkeypatch, option):
    """Checked before the models load; a regular file where a folder should be stops even root."""
    import nc_viz.tasks.figures

    (tmp_path / "plain").write_text("a file, not a folder")
    target = tmp_path / "plain" / "out.png"
    monkeypatch.setattr(nc_viz.tasks.figures, "load_model_pair", lambda **_: pytest.fail("models were loaded"))
    base, nc = small_pair
    args = ["compare", rgb_image, "--baseline", base, "--nc", nc, option, target]
    if option != "-o":
        args += ["-o", tmp_path / "fig.png"]
    code, _, err = run(args, capsys)
    assert code == 1 and err.startswith(f"error: {target}: cannot write here"), err
    assert err.strip().count("\n") == 0 and "internal error" not in err


def test_unknown_target_name_is_a_usage_error(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png",
                        "--target", "strr"], capsys)
    assert code == 2 and "star" in err


def test_cuda_without_a_gpu_is_a_clear_error(small_pair, rgb_image, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with a GPU
    base, nc = small_pair
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "--device", "cuda",
                        "-o", tmp_path / "f.png"], capsys)
    assert code == 1 and "no CUDA device" in err
    assert "--device auto" in err and "--device cpu" in err


def test_models_lists_every_architecture(capsys):
    code, out, _ = run(["models"], capsys)
    assert code == 0
    for name in ("resnet18", "resnet101_nc", "resnet20", "resnet56_nc"):
        assert f"\n{name} " in out
    assert "44,549,160" in out  # torchvision resnet101 with 1000 classes


@pytest.mark.parametrize("clash", ["input", "maps"])
def test_an_output_may_not_overwrite_an_input_or_another_output(small_pair, rgb_image, tmp_path, capsys, clash):
    base, nc = small_pair
    before = rgb_image.read_bytes()
    if clash == "input":
        args = ["compare", rgb_image, "-o", rgb_image]
    else:
        args = ["compare", rgb_image, "-o", tmp_path / "f.png", "--save-maps", tmp_path / "f.png"]
    code, _, err = run([*args, "--baseline", base, "--nc", nc], capsys)
    assert code == 2 and "give each output its own file" in err
    assert rgb_image.read_bytes() == before and not (tmp_path / "f.png").exists()


def _pdf_text(path) -> str:
    import pypdf

    return pypdf.PdfReader(path).pages[0].extract_text()


def test_compare_diff_adds_a_column_and_titles_may_be_four(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    args = ["compare", rgb_image, "--baseline", base, "--nc", nc, "--device", "cpu", "--diff"]
    code, _, err = run([*args, "-o", tmp_path / "a.pdf"], capsys)
    assert code == 0, err
    text = _pdf_text(tmp_path / "a.pdf")
    assert "NC − Baseline" in text and "CAM-Ours" in text
    assert "shared" not in text  # --scale panel: no colour bar unless asked
    code, _, err = run([*args, "-o", tmp_path / "b.pdf", "--titles", "In,B,N,Delta", "--colorbar"], capsys)
    assert code == 0, err
    text = _pdf_text(tmp_path / "b.pdf")
    assert "Delta" in text and "on the shared scale" in text and "per panel" in text
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "c.png",
                        "--titles", "a,b,c,d"], capsys)
    assert code == 2 and "--titles" in err


def test_compare_shared_scale_draws_a_colour_bar_by_default(small_pair, rgb_image, tmp_path, capsys):
    from nc_viz.figures.raster import colormap_lut

    base, nc = small_pair
    args = ["compare", rgb_image, "--baseline", base, "--nc", nc, "--device", "cpu", "--scale", "shared"]
    figures = {}
    for name, extra in (("bar", []), ("none", ["--no-colorbar"])):
        assert run([*args, "-o", tmp_path / f"{name}.png", *extra], capsys)[0] == 0
        figures[name] = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"))
    assert figures["bar"].shape[0] > figures["none"].shape[0]
    strip = figures["bar"][figures["none"].shape[0] - 4:].reshape(-1, 3)
    lut = colormap_lut("jet")
    assert (strip == lut[0]).all(axis=1).any() and (strip == lut[255]).all(axis=1).any()
