"""`ncviz batch`: streaming a folder, failures, resuming, determinism, interrupts, sharding."""
from __future__ import annotations

import html
import json
import os
import signal
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.core.errors import NcVizError
from nc_viz.engine import decode as engine_decode
from nc_viz.engine.device import AdaptiveForward
from nc_viz.engine.distributed import Shard
from nc_viz.figures import png
from nc_viz.figures.style import MapStyle
from nc_viz.tasks.batch import figures as batch_figures
from nc_viz.tasks.batch.plan import output_names
from nc_viz.tasks.batch.summary import drop_stale_reports
from nc_viz.pair import ModelPair
from conftest import assert_pdf, assert_svg, pair_args, run, torchrun


def write_images(folder: Path, count: int, size=(40, 30), suffix=".png", seed=0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i:02d}{suffix}"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]


@pytest.fixture
def mixed_dir(image_dir: Path) -> Path:
    """The nine image kinds of conftest, a broken PNG and two files that are not images."""
    (image_dir / "broken.png").write_bytes(b"\x89PNG this is not a png")
    (image_dir / "notes.txt").write_text("not an image")
    (image_dir / "README").write_text("no suffix")
    return image_dir


def test_batch_help_does_not_import_torch():
    code = ("import sys\nfrom nc_viz.cli import main\nrc = main(['batch', '--help'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--skip-existing" in proc.stdout and "--layout" in proc.stdout


def test_progress_events_show_speed_and_errors(capsys):
    from nc_viz.cli.batch import CliEvents, summary_line

    events = CliEvents(show_progress=True)
    events.start(total=4, todo=3)
    for _ in range(2):
        events.done({})
    events.failed(Path("in/x.png"), "cannot decode")
    events.done({})
    events.finish()
    err = capsys.readouterr().err
    assert "error: in/x.png: cannot decode" in err and "3/3" in err and "img/s" in err
    assert summary_line({"written": 12, "failed": 1, "skipped": 3}, "out") == "12 figures in out (1 failed, 3 skipped)"
    assert summary_line({"written": 1, "failed": 0, "skipped": 0}, "out") == "1 figure in out"


# ----------------------------------------------------------------------------- planning


def test_output_names_keep_stems_and_resolve_collisions():
    rels = [Path(p) for p in ("a.jpg", "a.PNG", "b.png", "sub/a.jpg", "c.jpg", "c.jpg.png", "c.png", "d.webp")]
    names = [p.as_posix() for p in output_names(rels)]
    assert names == ["a.jpg.png", "a.PNG.png", "b.png", "sub/a.png", "c.jpg.png", "c.jpg-2.png", "c.png.png",
                     "d.png"]
    assert len({n.lower() for n in names}) == len(names)


def test_shard_takes_every_world_th_file():
    items = list(range(7))
    assert Shard(0, 2).take(items) == [0, 2, 4, 6]
    assert Shard(1, 2).take(items) == [1, 3, 5]
    assert sorted(Shard(0, 3).take(items) + Shard(1, 3).take(items)
                  + Shard(2, 3).take(items)) == items


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (37, 64)])
@pytest.mark.parametrize("level", [0, 1, 3, 9])  # ISA-L serves 0..3, zlib 4..9 (and all, without ISA-L)
@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_encode_png_is_lossless_and_deterministic(shape, level, deflate, monkeypatch):
    import io
    import zlib

    if deflate == "zlib":  # the fallback when python-isal is missing
        monkeypatch.setattr(png, "_deflate_module", lambda: zlib)
    else:
        assert png._deflate_module() is not zlib, "python-isal is a dependency: it should be installed"

    rng = np.random.default_rng(sum(shape))
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb[: shape[0] // 2] = rgb[0]  # repeated rows, as in real figures
    data = png.encode_png(rgb, level)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        assert np.array_equal(np.asarray(img), rgb)
    assert png.encode_png(rgb.copy(), level) == data


# ----------------------------------------------------------------------------- end to end


def test_every_image_gives_a_figure_and_other_files_are_ignored(small_pair, image_dir, tmp_path, capsys):
    (image_dir / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, err = run(["batch", image_dir, "-o", out, *pair_args(small_pair), "--workers", "0",
                             "--batch-size", "4"], capsys)
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    assert stdout.strip() == f"9 figures in {out}"
    expected = {"a.png", "b.png", "gray.png", "palette.png", "rgba.png", "deep16.png", "c.png", "d.png", "e.png"}
    assert {p.name for p in out.glob("*.png")} == expected
    for path in out.glob("*.png"):
        with Image.open(path) as fig:
            assert fig.format == "PNG" and fig.width > 3 * 192
    assert not leftovers(out)


def test_broken_image_is_reported_skipped_counted_and_exit_1(small_pair, mixed_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["batch", mixed_dir, "-o", out, *pair_args(small_pair), "--workers", "2",
                             "--batch-size", "3"], capsys)
    assert code == 1
    assert stdout.strip() == f"9 figures in {out} (1 failed)"
    lines = err.strip().splitlines()
    assert lines[0] == f"error: {mixed_dir / 'broken.png'}: not an image file that can be decoded"
    assert lines[-1].startswith("error: 1 of 10 images failed") and len(lines) == 2
    assert len(list(out.glob("*.png"))) == 9 and not (out / "broken.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"] == {"images": 10, "written": 9, "skipped": 0, "failed": 1}
    failed = [r for r in summary["images"] if r["status"] == "failed"]
    assert failed == [{"input": "broken.png", "output": None, "status": "failed",
                       "error": "not an image file that can be decoded"}]


def test_summary_json_fields(small_pair, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["batch", image_dir, "-o", out, *pair_args(small_pair), "--workers", "0"], capsys)[0] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "ncviz.batch/2" and summary["input_dir"] == str(image_dir)
    assert summary["settings"]["layout"] == "compare"
    assert [r["input"] for r in summary["images"]] == sorted(p.name for p in image_dir.iterdir())
    names = ("circle", "square", "triangle", "star", "cross")
    for record in summary["images"]:
        assert record["status"] == "written"
        assert (out / record["output"]).is_file() and record["output"] == Path(record["input"]).stem + ".png"
        for model in ("baseline", "nc"):
            pred = record[model]
            assert set(pred) == {"class", "name", "probability"}
            assert names[pred["class"]] == pred["name"] and 0.2 <= pred["probability"] <= 1.0


def test_recursive_mirrors_subfolders_and_skips_the_output_folder(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 2)
    write_images(src / "deeper" / "more", 1, suffix=".JPG")
    out = src / "figures"  # inside the input folder: never read back as input
    code, _, err = run(["batch", src, "-o", out, *pair_args(small_pair), "--recursive", "--workers", "0"], capsys)
    assert code == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "deeper/more/img00.png", "img00.png", "img01.png"]
    code, _, err = run(["batch", src, "-o", out, *pair_args(small_pair), "--recursive", "--workers", "0"], capsys)
    assert code == 0 and json.loads((out / "summary.json").read_text())["totals"]["images"] == 3


def test_neurons_layout_draws_two_model_rows(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 3)
    compare, neurons = tmp_path / "c", tmp_path / "n"
    assert run(["batch", src, "-o", compare, *pair_args(small_pair), "--workers", "0"], capsys)[0] == 0
    code, _, err = run(["batch", src, "-o", neurons, *pair_args(small_pair), "--workers", "0",
                        "--layout", "neurons", "--top", "4"], capsys)
    assert code == 0, err
    with Image.open(compare / "img00.png") as c, Image.open(neurons / "img00.png") as n:
        assert n.height > 2 * 192 > c.height and n.width > c.width  # 2 rows, 1 + 4 columns
    assert json.loads((neurons / "summary.json").read_text())["settings"]["top_k"] == 4


def test_usage_errors(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 1)
    code, _, err = run(["batch", src, "-o", tmp_path / "o", *pair_args(small_pair), "--top", "3"], capsys)
    assert code == 2 and "--layout neurons" in err
    code, _, err = run(["batch", src, "-o", tmp_path / "o", *pair_args(small_pair), "--layout", "neurons",
                        "--top", "65"], capsys)
    # refused by the option's own range (1..64), before any model is loaded
    assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert re.search(r"--top\b.*\b65 is not in the range 1<=x<=64", err), err
    code, _, err = run(["batch", src, "-o", src, *pair_args(small_pair)], capsys)
    assert code == 2 and "differ" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["batch", empty, "-o", tmp_path / "o", *pair_args(small_pair)], capsys)
    assert code == 1 and "no image files" in err


def test_reruns_are_byte_identical_whatever_the_workers(small_pair, mixed_dir, tmp_path, capsys):
    outs = [tmp_path / "one", tmp_path / "two", tmp_path / "three", tmp_path / "four"]
    # one image per forward pass in every run: another batch (size or neighbours) may move a map by
    # ~1e-5 and a probability in its 6th digit (float sums in another order), not what this tests
    settings = [["--workers", "0"], ["--workers", "2"], ["--workers", "1", "--render-threads", "3"],
                ["--workers", "0", "--render-pool", "process", "--render-threads", "2"]]
    settings = [[*extra, "--batch-size", "1"] for extra in settings]
    for out, extra in zip(outs, settings):
        assert run(["batch", mixed_dir, "-o", out, *pair_args(small_pair), *extra], capsys)[0] == 1
    first = files_of(outs[0])
    assert len(first) == 11  # 9 figures, summary.json, index.html
    for out in outs[1:]:
        assert files_of(out) == first


def test_skip_existing_rewrites_nothing_and_renders_only_missing(small_pair, tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 5)
    assert run(["batch", src, "-o", out, *pair_args(small_pair), "--workers", "0"], capsys)[0] == 0
    full = files_of(out)
    (out / "img03.png").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    rendered = []
    original = batch_figures.render_png
    monkeypatch.setattr(batch_figures, "render_png", lambda result, name, style: rendered.append(name) or
                        original(result, name, style))
    decoded = []
    load = engine_decode.load_image
    monkeypatch.setattr(engine_decode, "load_image", lambda path: decoded.append(Path(path).name) or load(path))
    code, stdout, err = run(["batch", src, "-o", out, *pair_args(small_pair), "--workers", "0",
                             "--skip-existing"], capsys)
    assert code == 0, err
    assert stdout.strip() == f"1 figure in {out} (4 skipped)"
    assert rendered == ["img03.png"] and decoded == ["img03.png"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png") if p.name != "img03.png"} == mtimes
    assert (out / "img03.png").read_bytes() == full["img03.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"] == {"images": 5, "written": 1, "skipped": 4, "failed": 0}
    assert all("baseline" in r for r in summary["images"])  # predictions kept from the first run


def test_skip_existing_redraws_figures_of_other_settings(small_pair, tmp_path, capsys):
    """Each figure carries the tag of the settings that drew it: resuming with another layout
    (or models, colormap, ...) redraws them, so one folder never mixes two kinds of figure."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    args = ["batch", src, "-o", out, *pair_args(small_pair), "--workers", "0"]
    assert run(args, capsys)[0] == 0
    compare_tag = json.loads((out / "summary.json").read_text())["settings_tag"]
    assert {png.png_text(p)["ncviz-settings"] for p in out.glob("*.png")} == {compare_tag}
    code, stdout, err = run([*args, "--layout", "neurons", "--skip-existing"], capsys)
    assert code == 0 and stdout.strip() == f"2 figures in {out}", err
    assert {png.png_text(p)["ncviz-settings"] for p in out.glob("*.png")} != {compare_tag}
    # an interrupted run leaves no summary of its own: the figures' tags still tell, and they
    # carry their predictions, so the new summary and gallery lose nothing
    before = json.loads((out / "summary.json").read_text())["images"]
    (out / "summary.json").unlink()
    code, stdout, _ = run([*args, "--layout", "neurons", "--skip-existing"], capsys)
    assert code == 0 and stdout.strip() == f"0 figures in {out} (2 skipped)"
    after = json.loads((out / "summary.json").read_text())["images"]
    assert [(r["baseline"], r["nc"]) for r in after] == [(r["baseline"], r["nc"]) for r in before]
    assert "not recorded" not in (out / "index.html").read_text()
    # a damaged figure is drawn again
    whole = (out / "img00.png").read_bytes()
    (out / "img00.png").write_bytes(whole[:len(whole) // 2])
    code, stdout, _ = run([*args, "--layout", "neurons", "--skip-existing"], capsys)
    assert stdout.strip() == f"1 figure in {out} (1 skipped)" and (out / "img00.png").read_bytes() == whole
    code, stdout, _ = run([*args, "--cmap", "viridis", "--skip-existing"], capsys)
    assert code == 0 and stdout.strip() == f"2 figures in {out}"


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_format_writes_vector_figures_that_the_gallery_shows(small_pair, tmp_path, capsys, fmt):
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    args = ["batch", src, "-o", out, *pair_args(small_pair), "--workers", "0", "--format", fmt]
    code, _, err = run(args, capsys)
    assert code == 0, err
    first = files_of(out)
    assert sorted(first) == [f"img00.{fmt}", f"img01.{fmt}", "index.html", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["format"] == fmt and summary["images"][0]["output"] == f"img00.{fmt}"
    page = (out / "index.html").read_text()
    if fmt == "svg":
        assert '<img src="img00.svg"' in page
        assert_svg(first["img00.svg"])
        assert b"<text" in first["img00.svg"] and b"img00.png" in first["img00.svg"]
    else:
        assert '<object data="img00.pdf" type="application/pdf"' in page and '<a href="img00.pdf">' in page
        assert_pdf(first["img00.pdf"])
    # PDF and SVG figures carry no settings tag: --skip-existing draws them again, the same bytes
    code, stdout, _ = run([*args, "--skip-existing"], capsys)
    assert code == 0 and stdout.strip() == f"2 figures in {out}"
    assert files_of(out) == first


def test_shared_scale_figures_get_a_colour_bar_unless_told_not_to(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 1)
    heights = {}
    for name, extra in (("bar", []), ("none", ["--no-colorbar"])):
        out = tmp_path / name
        assert run(["batch", src, "-o", out, *pair_args(small_pair), "--workers", "0", "--scale", "shared",
                    *extra], capsys)[0] == 0
        heights[name] = Image.open(out / "img00.png").height
        assert json.loads((out / "summary.json").read_text())["settings"]["colorbar"] is (name == "bar")
    assert heights["bar"] > heights["none"]


def test_batch_figures_name_a_method_other_than_cam(small_pair):
    from nc_viz.pair import load_model_pair

    pair = load_model_pair(*small_pair, device="cpu")
    result = pair.run(torch.rand(1, 3, 32, 32))
    style = batch_figures.RenderStyle("compare", pair.class_name, MapStyle(method="gradcam"))
    assert list(batch_figures.build_figure(result, "a.png", style).column_titles) == [
        "Input", "CAM-Baseline (Grad-CAM)", "CAM-Ours (Grad-CAM)"]
    plain = batch_figures.RenderStyle("compare", pair.class_name)
    assert list(batch_figures.build_figure(result, "a.png", plain).column_titles) == ["Input", "CAM-Baseline", "CAM-Ours"]


def test_png_text_reads_what_encode_png_writes(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    path.write_bytes(png.encode_png(rgb, 1, {"ncviz-settings": "abc123", "Software": "ncviz"}))
    assert png.png_text(path) == {"ncviz-settings": "abc123", "Software": "ncviz"}
    with Image.open(path) as img:
        assert img.text["ncviz-settings"] == "abc123" and np.array_equal(np.asarray(img), rgb)
    (tmp_path / "x.png").write_bytes(b"not a png")
    assert png.png_text(tmp_path / "x.png") == {} and png.png_text(tmp_path / "missing.png") == {}


def test_keyboard_interrupt_stops_cleanly(small_pair, tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 12)
    calls = []
    original_run = ModelPair.run

    def interrupted_run(self, x, *args, **kwargs):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original_run(self, x, *args, **kwargs)

    original_render = batch_figures.render_png

    def slow_render(result, name, style):
        time.sleep(0.05)  # writes are still in flight when Ctrl-C comes
        return original_render(result, name, style)

    monkeypatch.setattr(ModelPair, "run", interrupted_run)
    monkeypatch.setattr(batch_figures, "render_png", slow_render)
    before = threading.active_count()
    code, _, err = run(["batch", src, "-o", out, *pair_args(small_pair), "--workers", "1", "--batch-size", "4",
                        "--render-threads", "2"], capsys)
    assert code == 130 and "interrupted" in err
    assert not leftovers(out)
    written = list(out.glob("*.png"))
    assert 1 <= len(written) <= 4  # writes in flight finish, queued ones are dropped
    for path in written:
        with Image.open(path) as fig:
            fig.load()
    assert not (out / "summary.json").exists()
    assert threading.active_count() <= before  # render threads are gone


@pytest.mark.serial  # a real Ctrl-C races the decode worker: timed as on a quiet machine
def test_real_sigint_leaves_no_partial_file(small_pair, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 1500, size=(32, 32))  # far more than can finish before the signal lands
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(Path(sys.executable).parent / "ncviz"), "batch", str(src), "-o", str(out),
           *map(str, pair_args(small_pair)), "--workers", "1", "--batch-size", "4"]
    # `make test &` (a background job) starts with SIGINT ignored, which make passes on to every
    # child: give ncviz the default disposition, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.glob("*.png")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(subprocess.signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not leftovers(out)
    assert 0 < len(list(out.glob("*.png"))) < 1500


def assert_whole_png(path: Path) -> None:
    """A complete PNG: the signature, then chunks whose CRCs hold, ending with IEND and nothing after."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: no PNG signature"
    pos, kind = 8, b""
    while pos < len(data):
        assert pos + 12 <= len(data), f"{path}: cut inside a chunk header at byte {pos}"
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        assert end <= len(data), f"{path}: {kind!r} chunk cut at byte {len(data)} of {end}"
        (crc,) = struct.unpack(">I", data[end - 4:end])
        assert crc == zlib.crc32(data[pos + 4:end - 4]), f"{path}: bad CRC in {kind!r}"
        pos = end
        if kind == b"IEND":
            break
    assert kind == b"IEND" and pos == len(data), f"{path}: no IEND at the end"


_KILLED_IN_A_WRITE = """
import resource, signal, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
# the first write that crosses this size is cut there and the process dies of SIGXFSZ inside it,
# as under kill -9: nothing of ncviz runs after it (Python ignores SIGXFSZ unless told otherwise)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from nc_viz.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGXFSZ"), reason="needs POSIX file size limits")
def test_a_kill_in_the_middle_of_a_figure_write_leaves_no_partial_png(small_pair, tmp_path, capsys):
    """The process dies while the first figure is half written. Whatever sits at a figure's final
    name must be a whole PNG (a viewer, a gallery or a resumed run may read it); the rerun completes."""
    import signal

    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 3, size=(32, 32))
    limit = 3000  # bytes: far less than one figure
    import matplotlib.font_manager  # noqa: F401  (its font cache exists: the killed run must not write it)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", _KILLED_IN_A_WRITE, str(limit), "batch", str(src), "-o", str(out),
                           *map(str, pair_args(small_pair)), "--workers", "0"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-3000:]
    cut = [p.name for p in out.rglob("*") if p.is_file() and p.stat().st_size == limit]
    assert len(cut) == 1 and "img0" in cut[0], f"not killed inside a figure write: {cut}"
    for path in out.glob("*.png"):
        assert_whole_png(path)
    code, stdout, err = run(["batch", src, "-o", out, *pair_args(small_pair), "--workers", "0",
                             "--skip-existing"], capsys)
    assert code == 0, err
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == ["img00.png", "img01.png", "img02.png"]
    for name in figures:
        assert_whole_png(out / name)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_precision_keeps_maps_in_float32(small_pair, precision, dtype):
    """Both models' maps and logits are float32 and within a few roundings of `dtype` of the exact
    ones (4 eps of the map's scale: bf16 3%, fp16 0.4%; measured 1.1% and 0.13%)."""
    from nc_viz.pair import load_model_pair

    base, nc = small_pair
    pair = load_model_pair(base, nc, device="cpu")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    exact, low = pair.run(x, top_k=3), pair.run(x, top_k=3, precision=precision)
    tol = 4 * torch.finfo(dtype).eps
    for side in ("baseline", "nc"):
        want_out, got_out = exact.roles[side].out, low.roles[side].out
        assert got_out.cam.dtype == got_out.logits.dtype == got_out.neuron_maps.dtype == torch.float32
        assert torch.equal(got_out.target, want_out.target), side
        for name in ("cam", "logits"):
            got, want = getattr(got_out, name), getattr(want_out, name)
            torch.testing.assert_close(got, want, rtol=0, atol=tol * float(want.abs().max()), msg=f"{side} {name}")


def test_batch_with_bf16_writes_every_figure(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 3)
    code, _, err = run(["batch", src, "-o", tmp_path / "out", *pair_args(small_pair), "--workers", "0",
                        "--precision", "bf16"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]["precision"] == "bf16"
    assert len(list((tmp_path / "out").glob("*.png"))) == 3


# ----------------------------------------------------------------------------- out of memory


def test_out_of_memory_halves_the_batch_and_keeps_the_smaller_size():
    seen = []

    def fake_run(x):
        seen.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return x.clone()

    freed = []
    forward = AdaptiveForward(fake_run, batch_size=8, on_oom=lambda: freed.append(1))
    x = torch.arange(11)
    parts = list(forward(x))
    assert seen == [8, 4, 2, 2, 2, 2, 2, 1]
    assert torch.equal(torch.cat([r for _, r in parts]), x)
    assert [offset for offset, _ in parts] == [0, 2, 4, 6, 8, 10]
    assert forward.limit == 2 and len(freed) == 2
    assert seen[-1] == 1 and list(forward(torch.arange(3))) and seen[-2:] == [2, 1]


def test_out_of_memory_at_batch_size_one_is_an_error():
    def fake_run(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    with pytest.raises(NcVizError, match="batch size 1"):
        list(AdaptiveForward(fake_run, batch_size=2, on_oom=lambda: None)(torch.zeros(2)))


def test_other_errors_are_not_retried():
    def fake_run(x):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(AdaptiveForward(fake_run, batch_size=4, on_oom=lambda: None)(torch.zeros(4)))


def test_injected_out_of_memory_in_a_run_still_writes_every_figure(small_pair, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    write_images(src, 7)
    sizes = []
    original_run = ModelPair.run

    def small_memory(self, x, *args, **kwargs):
        sizes.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return original_run(self, x, *args, **kwargs)

    monkeypatch.setattr(ModelPair, "run", small_memory)
    code, _, err = run(["batch", src, "-o", tmp_path / "out", *pair_args(small_pair), "--workers", "0",
                        "--batch-size", "5"], capsys)
    assert code == 0, err
    assert sizes[:3] == [5, 2, 2] and max(sizes[3:]) <= 2
    assert len(list((tmp_path / "out").glob("*.png"))) == 7


# ----------------------------------------------------------------------------- the gallery


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var found = Array.prototype.map.call(document.images, function (img) {
    return [img.getAttribute('src'), img.naturalWidth, img.complete];
  });
  var pre = document.createElement('pre');
  pre.id = 'ncviz-check';
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});
</script>"""


def test_index_html_lists_every_figure_and_the_images_load(small_pair, mixed_dir, tmp_path, capsys):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    Image.open(mixed_dir / "a.jpg").save(mixed_dir / "odd name & #1 <x>.png")
    out = tmp_path / "out"
    assert run(["batch", mixed_dir, "-o", out, *pair_args(small_pair), "--workers", "0"], capsys)[0] == 1
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "odd name &amp; #1 &lt;x&gt;.png" in page and "broken.png" in page
    probe = out / "_probe.html"  # the gallery itself has no script; a copy beside it gets one
    probe.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
            check=False, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="ncviz-check">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert match, proc.stderr[-2000:]
    images = json.loads(html.unescape(match.group(1)))
    summary = json.loads((out / "summary.json").read_text())
    outputs = sorted(r["output"] for r in summary["images"] if r["output"])
    assert len(images) == len(outputs) == 10
    from urllib.parse import unquote

    assert sorted(unquote(src) for src, _, _ in images) == outputs
    assert all(width > 0 and complete for _, width, complete in images), images
    for record in summary["images"]:
        if record["output"]:
            assert html.escape(f"{record['baseline']['name']} ({record['baseline']['probability']:.0%}") in page


# ----------------------------------------------------------------------------- torchrun


@pytest.mark.serial  # two ranks of its own
def test_torchrun_two_processes_equal_one_process(small_pair, mixed_dir, tmp_path, capsys):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    # batch size 1: a shard batches other neighbours together, which may move a map by ~1e-5
    args = ["batch", str(mixed_dir), *map(str, pair_args(small_pair)), "--workers", "0", "--batch-size", "1"]
    assert run([*args, "-o", single], capsys)[0] == 1
    proc = torchrun([*args, "-o", sharded], timeout=120)
    # a failed image makes every rank exit 1, and torchrun with it
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.count("9 figures in") == 1
    assert proc.stderr.count("broken.png: not an image file") == 1
    assert files_of(sharded) == files_of(single)


_FAILING_RANK = """
import os, sys
from nc_viz.tasks.batch import runner
from nc_viz.core.errors import NcVizError

real = runner.load_model_pair
def load(*args, **kwargs):
    if os.environ["RANK"] == "1":
        raise NcVizError("cuda:1: no such device (injected)")
    return real(*args, **kwargs)
runner.load_model_pair = load
from nc_viz.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.serial  # two ranks of its own
def test_torchrun_a_rank_that_fails_stops_every_rank_with_its_reason(small_pair, tmp_path):
    """Rank 1 fails before the ranks exchange their records: rank 0 must not wait for it forever."""
    src = tmp_path / "in"
    write_images(src, 4)
    script = tmp_path / "failing_rank.py"
    script.write_text(_FAILING_RANK)
    proc = torchrun(["batch", src, "-o", tmp_path / "out", *pair_args(small_pair), "--workers", "0"],
                    script=script, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: rank 1 of 2 failed: cuda:1: no such device (injected)" in proc.stderr
    assert "error: cuda:1: no such device (injected)" in proc.stderr
    # rank 0 still writes the summary: its own figures, and rank 1's images (every other one) failed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    inputs = sorted(p.name for p in src.iterdir())
    assert [r["input"] for r in summary["images"]] == inputs
    assert [r["status"] for r in summary["images"]] == ["written", "failed"] * 2
    assert {r["error"] for r in summary["images"][1::2]} == {"rank 1 of 2 failed: cuda:1: no such device (injected)"}
    assert summary["totals"] == {"images": 4, "written": 2, "skipped": 0, "failed": 2}
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.png")) == [Path(i).stem for i in inputs[0::2]]
    assert (tmp_path / "out" / "index.html").is_file()


def test_decode_workers_silence_only_the_resource_sharer_reset():
    """Ctrl-C while a worker hands over a file descriptor resets the worker's resource-sharing
    connection; that traceback is noise, any other thread error still reaches the hook."""
    seen = []
    saved = threading.excepthook
    threading.excepthook = lambda args: seen.append(type(args.exc_value).__name__)
    try:
        engine_decode.quiet_worker_shutdown(0)
        sharer = {}
        exec(compile("def serve():\n    raise ConnectionResetError(104, 'reset by peer')\n",
                     "/usr/lib/python3/multiprocessing/resource_sharer.py", "exec"), sharer)

        def other():
            raise ConnectionResetError(104, "a real problem")

        for target in (sharer["serve"], other):
            thread = threading.Thread(target=target)
            thread.start()
            thread.join()
    finally:
        threading.excepthook = saved
    assert seen == ["ConnectionResetError"]  # only the one from elsewhere


def test_reports_of_other_settings_are_dropped_when_a_run_starts(tmp_path):
    """Else an interrupted run would leave a summary describing figures it had replaced."""
    (tmp_path / "summary.json").write_text(json.dumps({"settings_tag": "old"}))
    (tmp_path / "index.html").write_text("<html></html>")
    drop_stale_reports(tmp_path, "old")
    assert (tmp_path / "summary.json").exists() and (tmp_path / "index.html").exists()
    drop_stale_reports(tmp_path, "new")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_target_creates_no_output_folder(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 1)
    out = tmp_path / "new" / "deeper"
    code, _, err = run(["batch", src, "-o", out, *pair_args(small_pair), "--workers", "0", "--target", "99"], capsys)
    assert code == 2 and "--target 99" in err
    assert not (tmp_path / "new").exists()


def test_a_run_that_stops_midway_still_writes_its_summary(small_pair, tmp_path, monkeypatch):
    """One process whose forward passes fail at the third image (an error of the whole run, not
    of one image): the figures drawn stand as written (those in flight finish and count), the
    rest are failed with the reason, summary.json and index.html are written, and the error is
    raised."""
    from nc_viz.pair import PairSpec
    from nc_viz.tasks.batch import BatchOptions, run_batch

    src = tmp_path / "in"
    write_images(src, 5)
    calls = []
    real = ModelPair.run

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise NcVizError("the device went away (injected)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ModelPair, "run", failing)
    base, nc = small_pair
    with pytest.raises(NcVizError, match="injected"):
        run_batch(src, tmp_path / "out", pair_spec=PairSpec(str(base), str(nc), device="cpu"),
                  options=BatchOptions(batch_size=1, workers=0, render_threads=1))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    statuses = [r["status"] for r in summary["images"]]
    # the second figure may still be waiting for the render thread when the run stops: then it
    # is cancelled, never written, and failed like the rest
    written = statuses.count("written")
    assert written in (1, 2) and statuses == ["written"] * written + ["failed"] * (5 - written)
    assert {r["error"] for r in summary["images"][written:]} == {"the run stopped: the device went away (injected)"}
    assert summary["totals"] == {"images": 5, "written": written, "skipped": 0, "failed": 5 - written}
    assert summary["provenance"] is not None
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"img0{i}.png" for i in range(written)]
    assert (tmp_path / "out" / "index.html").is_file()


def test_a_run_that_cannot_start_leaves_the_earlier_summary(small_pair, tmp_path):
    """A checkpoint that does not load stops the run before anything is drawn: the summary of
    the run before is kept as it was."""
    from nc_viz.pair import PairSpec
    from nc_viz.tasks.batch import BatchOptions, run_batch

    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    base, nc = small_pair
    run_batch(src, out, pair_spec=PairSpec(str(base), str(nc), device="cpu"), options=BatchOptions(workers=0))
    before = (out / "summary.json").read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        run_batch(src, out, pair_spec=PairSpec(str(base), str(broken), device="cpu"), options=BatchOptions(workers=0))
    assert (out / "summary.json").read_bytes() == before
