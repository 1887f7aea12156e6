"""Attacks a hostile or careless user could make (README "What ncviz refuses and why"): each must
fail cleanly, destroy no file, and never lose a folder run's summary and gallery."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nc_viz.pair import PairSpec
from conftest import pair_args, run, save_image


@pytest.fixture
def own_pair(small_pair, tmp_path) -> tuple[Path, Path]:
    """Copies of the small pair that a test may lose."""
    paths = []
    for src in small_pair:
        dst = tmp_path / "models" / src.name
        dst.parent.mkdir(exist_ok=True)
        dst.write_bytes(src.read_bytes())
        paths.append(dst)
    return paths[0], paths[1]


# ----------------------------------------------------------------------------- 1, 2: no output is an input


@pytest.mark.parametrize("flag", ["-o", "--save-maps"])
def test_compare_refuses_to_overwrite_a_checkpoint(own_pair, rgb_image, tmp_path, capsys, flag):
    base, nc = own_pair
    before = base.read_bytes()
    args = ["compare", rgb_image, "--baseline", base, "--nc", nc, "--device", "cpu", "--format", "png"]
    args += ["-o", tmp_path / "fig.png", "--save-maps", base] if flag == "--save-maps" else ["-o", base]
    code, _, err = run(args, capsys)
    assert code == 2 and "baseline checkpoint" in err and str(base) in err
    assert base.read_bytes() == before


def test_compare_refuses_an_output_hard_linked_to_a_checkpoint(own_pair, rgb_image, tmp_path, capsys):
    base, nc = own_pair
    link = tmp_path / "link.pt"
    os.link(nc, link)
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "--device", "cpu",
                        "-o", link, "--format", "png"], capsys)
    assert code == 2 and "NC checkpoint" in err
    assert link.read_bytes() == nc.read_bytes()


def test_outputs_may_not_be_the_shipped_demo_pair(own_pair, rgb_image, capsys, monkeypatch):
    from nc_viz import pair as api

    monkeypatch.setattr(api, "default_checkpoints", lambda: own_pair)  # copies: the shipped files stay safe
    before = own_pair[0].read_bytes()
    code, _, err = run(["compare", rgb_image, "--device", "cpu", "-o", own_pair[0], "--format", "png"], capsys)
    assert code == 2 and "baseline checkpoint" in err
    assert own_pair[0].read_bytes() == before


def test_neurons_json_may_not_be_an_input_image(small_pair, rgb_image, tmp_path, capsys):
    before = rgb_image.read_bytes()
    code, _, err = run(["neurons", rgb_image, *pair_args(small_pair), "--top", "2", "-o", tmp_path / "n.png",
                        "--json", rgb_image], capsys)
    assert code == 2 and rgb_image.read_bytes() == before


def test_batch_into_a_parent_of_the_input_never_overwrites_an_input(small_pair, tmp_path, capsys):
    first = save_image(tmp_path / "ov" / "in" / "x.png", seed=1)
    save_image(tmp_path / "ov" / "in" / "in" / "x.jpg", seed=2)
    before = first.read_bytes()
    code, _, err = run(["batch", tmp_path / "ov" / "in", "-o", tmp_path / "ov", "--recursive",
                        *pair_args(small_pair)], capsys)
    assert first.read_bytes() == before
    assert code == 2 and "input" in err and len(err.strip().splitlines()) == 1


def test_batch_into_a_parent_without_collision_still_works(small_pair, tmp_path, capsys):
    save_image(tmp_path / "top" / "photos" / "a.png")
    code, _, _ = run(["batch", tmp_path / "top" / "photos", "-o", tmp_path / "top", *pair_args(small_pair)], capsys)
    assert code == 0 and (tmp_path / "top" / "a.png").is_file()


@pytest.mark.parametrize("report", ["summary.json", "index.html"])
def test_batch_refuses_a_report_that_is_a_folder_of_the_input(small_pair, tmp_path, capsys, report):
    save_image(tmp_path / "out" / report / "a.png")
    code, _, err = run(["batch", tmp_path / "out" / report, "-o", tmp_path / "out", *pair_args(small_pair)], capsys)
    assert code == 2 and report in err
    assert not (tmp_path / "out" / "a.png").exists()


# ----------------------------------------------------------------------------- 3-6: odd names, odd models


def strict_json(path: Path) -> dict:
    """summary.json as a strict reader sees it: UTF-8, no NaN or Infinity."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(path.read_bytes().decode("utf-8"), parse_constant=refuse)


def custom_pair(small_pair, tmp_path, class_names=None, nan=False) -> tuple[Path, Path]:
    """The small pair re-saved with other class names and/or NaN weights in the baseline's fc."""
    import torch

    from nc_viz.models.checkpoints import load_checkpoint, save_checkpoint, with_class_names

    paths = []
    for src in small_pair:
        loaded = load_checkpoint(src)
        meta = with_class_names(loaded.meta, class_names) if class_names else loaded.meta
        if nan and not paths:
            with torch.no_grad():
                loaded.model.fc.weight.fill_(float("nan"))
        paths.append(save_checkpoint(tmp_path / "custom" / src.name, loaded.model, meta))
    return paths[0], paths[1]


def test_a_newline_in_a_file_name_and_a_class_name_is_that_images_name(small_pair, tmp_path, capsys):
    names = ("circle\nbig", "square", "triangle", "star", "cross\r")
    base, nc = custom_pair(small_pair, tmp_path, class_names=names)
    src = tmp_path / "in"
    save_image(src / "a\nb.png")
    save_image(src / "plain.png", seed=1)
    (src / "bad\n.png").write_bytes(b"junk")
    code, _, err = run(["batch", src, "-o", tmp_path / "out", "--baseline", base, "--nc", nc, "--device", "cpu"],
                       capsys)
    assert code == 1 and "error: " + str(src / "bad\\n.png") + ": not an image file" in err
    summary = strict_json(tmp_path / "out" / "summary.json")
    assert [r["input"] for r in summary["images"]] == ["a\nb.png", "bad\n.png", "plain.png"]
    assert summary["images"][1]["error"] == "not an image file that can be decoded"
    assert summary["totals"]["written"] == 2 and (tmp_path / "out" / "index.html").is_file()


def test_a_name_that_is_not_utf8_is_kept_escaped_and_linked(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    odd = os.fsdecode(b"caf\xe9")
    save_image(src / f"{odd}.png")
    save_image(src / "sub\xe9" / "x.png", seed=1)
    code, _, err = run(["batch", src, "-o", tmp_path / "out", "--recursive", *pair_args(small_pair)], capsys)
    assert code == 0, err
    summary = strict_json(tmp_path / "out" / "summary.json")
    assert summary["totals"]["written"] == 2
    assert "caf\\xe9.png" in [r["input"] for r in summary["images"]]
    assert (tmp_path / "out" / f"{odd}.png").is_file()
    gallery = (tmp_path / "out" / "index.html").read_bytes().decode("utf-8")
    assert 'href="caf%E9.png"' in gallery and 'href="sub%C3%A9/x.png"' in gallery


def test_nan_weights_give_valid_json_and_say_so(small_pair, tmp_path, capsys):
    base, nc = custom_pair(small_pair, tmp_path, nan=True)
    save_image(tmp_path / "in" / "a.png")
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", "--baseline", base, "--nc", nc,
                        "--device", "cpu"], capsys)
    summary = strict_json(tmp_path / "out" / "summary.json")
    assert summary["images"][0]["baseline"]["probability"] is None
    assert summary["non_finite_outputs"] == {"baseline": 1, "nc": 0}
    assert "not finite" in err and (tmp_path / "out" / "index.html").is_file()


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_dollars_in_names_and_titles_are_literal_text(small_pair, tmp_path, capsys, fmt):
    image = save_image(tmp_path / "a$\\frac{1$b.png")
    code, _, err = run(["compare", image, *pair_args(small_pair), "--titles", "$x^$,$\\alpha$,$$",
                        "-o", tmp_path / f"fig.{fmt}"], capsys)
    assert code == 0, err
    if fmt == "svg":
        assert "$x^$" in (tmp_path / "fig.svg").read_text(encoding="utf-8")


def test_compare_with_nan_weights_says_so(small_pair, rgb_image, tmp_path, capsys):
    base, nc = custom_pair(small_pair, tmp_path, nan=True)
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "--device", "cpu",
                        "-o", tmp_path / "fig.png"], capsys)
    assert code == 0 and "baseline model's outputs were not finite" in err


def test_a_figure_that_cannot_be_drawn_is_that_images_failure(small_pair, tmp_path, monkeypatch):
    from nc_viz.tasks import batch
    from nc_viz.tasks.batch import figures as batch_figures

    real = batch_figures.render_png

    def fragile(result, name, style):
        if name.startswith("boom"):
            raise ValueError("the renderer gave up")
        return real(result, name, style)

    monkeypatch.setattr(batch_figures, "render_png", fragile)
    save_image(tmp_path / "in" / "boom.png")
    save_image(tmp_path / "in" / "fine.png", seed=1)
    base, nc = small_pair
    summary = batch.run_batch(tmp_path / "in", tmp_path / "out", pair_spec=PairSpec(base, nc, device="cpu"))
    assert summary.totals == {"images": 2, "written": 1, "skipped": 0, "failed": 1}
    assert "the renderer gave up" in summary.data["images"][0]["error"]
    assert (tmp_path / "out" / "index.html").is_file() and (tmp_path / "out" / "summary.json").is_file()


# ----------------------------------------------------------------------------- 7, 8: checkpoints


def resave(small_pair, tmp_path, name: str, edit_meta=None, edit_state=None) -> Path:
    """The small baseline re-saved in the own format with its metadata or state edited."""
    import torch

    payload = torch.load(small_pair[0], weights_only=True)
    if edit_meta:
        edit_meta(payload["meta"])
    if edit_state:
        edit_state(payload["state_dict"])
    path = tmp_path / name
    torch.save(payload, path)
    return path


def compare_with(baseline: Path, small_pair, tmp_path, rgb_image, capsys):
    return run(["compare", rgb_image, "--baseline", baseline, "--nc", small_pair[1], "--device", "cpu",
                "-o", tmp_path / "fig.png"], capsys)


def safetensors_with(small_pair, tmp_path, header: str) -> Path:
    import torch
    from safetensors.torch import save_file

    state = torch.load(small_pair[0], weights_only=True)["state_dict"]
    path = tmp_path / "odd.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"ncviz": header})
    return path


@pytest.mark.parametrize("header, reason", [("{not json", "not JSON"), ("[1, 2]", "not a JSON object")])
def test_safetensors_metadata_that_is_not_a_json_object(small_pair, tmp_path, rgb_image, capsys, header, reason):
    path = safetensors_with(small_pair, tmp_path, header)
    code, _, err = compare_with(path, small_pair, tmp_path, rgb_image, capsys)
    assert code == 1 and err.startswith(f"error: {path}: ") and reason in err and "internal" not in err


@pytest.mark.parametrize("key, value, reason", [
    ("mean", ["a", "b", "c"], "mean"), ("crop_pct", 0, "crop_pct"), ("input_size", 100000, "input_size"),
    ("std", [0.2, 0.0, 0.2], "std"), ("num_classes", "five", "num_classes"), ("class_names", 7, "class_names"),
])
def test_own_metadata_values_are_checked(small_pair, tmp_path, rgb_image, capsys, key, value, reason):
    path = resave(small_pair, tmp_path, "meta.pt", edit_meta=lambda meta: meta.__setitem__(key, value))
    code, _, err = compare_with(path, small_pair, tmp_path, rgb_image, capsys)
    assert code == 1 and err.startswith(f"error: {path}: ") and reason in err and "internal" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_integer_tensor_for_float_weights_names_the_key(small_pair, tmp_path, rgb_image, capsys):
    def to_int(state):
        state["fc.weight"] = state["fc.weight"].to(__import__("torch").int32)

    path = resave(small_pair, tmp_path, "int.pt", edit_state=to_int)
    code, _, err = compare_with(path, small_pair, tmp_path, rgb_image, capsys)
    assert code == 1 and err.startswith(f"error: {path}: ") and "fc.weight" in err and "int32" in err


@pytest.mark.parametrize("kind", ["fifo", "device", "link to device"])
def test_a_checkpoint_that_is_not_a_regular_file_is_named_for_what_it_is(small_pair, tmp_path, rgb_image, capsys,
                                                                         kind):
    if kind == "fifo":
        path, expected = tmp_path / "pipe.pt", "a FIFO (named pipe)"
        os.mkfifo(path)
    elif kind == "device":
        path, expected = Path("/dev/zero"), "a character device"
    else:
        path, expected = tmp_path / "zero.pt", "a symbolic link to /dev/zero, a character device"
        path.symlink_to("/dev/zero")
    code, _, err = compare_with(path, small_pair, tmp_path, rgb_image, capsys)
    assert code == 1 and f"error: {path}: {expected}" in err
    save_image(tmp_path / "in" / "a.png")
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", "--baseline", path, "--nc", small_pair[1],
                        "--device", "cpu"], capsys)
    assert code == 1 and f"error: {path}: {expected}" in err


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_checkpoint_path_that_is_not_utf8_loads(small_pair, tmp_path, rgb_image, capsys, suffix):
    from nc_viz.models.checkpoints import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(small_pair[0])
    path = save_checkpoint(tmp_path / (os.fsdecode(b"mod\xe8le") + suffix), loaded.model, loaded.meta)
    code, out, err = compare_with(path, small_pair, tmp_path, rgb_image, capsys)
    assert code == 0, err


# ----------------------------------------------------------------------------- 9-13: concerns settled


def test_compare_refuses_a_fifo_instead_of_blocking(small_pair, tmp_path):
    import subprocess
    import sys

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "nc_viz", "compare", str(fifo), *map(str, pair_args(small_pair)),
                           "-o", str(tmp_path / "fig.png")], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and f"error: {fifo}: a FIFO (named pipe)" in done.stderr


def jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny JPEG whose frame header claims `width` x `height` (the data is for 16 x 16)."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_an_image_whose_header_claims_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    from nc_viz.models.inputs import load_image
    from nc_viz.core.errors import ImageError

    bomb = jpeg_claiming(tmp_path / "bomb.jpg", 9000, 9000)
    assert bomb.stat().st_size < 5000
    with pytest.raises(ImageError, match="9000 x 9000 = 81.0 megapixels, above the limit of 64"):
        load_image(bomb)
    small = save_image(tmp_path / "small.png")
    monkeypatch.setenv("NCVIZ_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match="40 x 30 .* above the limit"):
        load_image(small)
    monkeypatch.setenv("NCVIZ_MAX_IMAGE_PIXELS", "1200")
    assert load_image(small).size == (40, 30)


def test_skip_existing_redraws_a_figure_damaged_in_its_middle(small_pair, tmp_path, capsys):
    from nc_viz.figures.png import png_text

    save_image(tmp_path / "in" / "a.png")
    args = ["batch", tmp_path / "in", "-o", tmp_path / "out", *pair_args(small_pair), "--skip-existing"]
    assert run(args, capsys)[0] == 0
    figure = tmp_path / "out" / "a.png"
    data = bytearray(figure.read_bytes())
    good = bytes(data)
    data[len(data) // 2] ^= 0xFF
    figure.write_bytes(bytes(data))
    assert png_text(figure)  # tag and tail still look right
    code, _, err = run(args, capsys)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert code == 0 and summary["totals"]["written"] == 1 and figure.read_bytes() == good
    assert run(args, capsys)[0] == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["totals"]["skipped"] == 1


def test_a_second_writer_into_one_folder_is_refused(small_pair, tmp_path, capsys):
    from nc_viz.core.lock import FolderLock

    save_image(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    with FolderLock(tmp_path / "out") as other:
        other.acquire()
        code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", *pair_args(small_pair)], capsys)
        assert code == 1 and "is writing into this folder" in err and str(os.getpid()) in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out" / "a.png").exists()
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", *pair_args(small_pair)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "index.html", "summary.json"]


def test_a_stale_lock_left_by_a_dead_writer_is_taken_over(small_pair, tmp_path, capsys):
    import subprocess
    import sys

    from nc_viz.core.lock import LOCK_NAME

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    save_image(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_NAME).write_text(f"{dead.stdout.strip()} somehost\n")
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", *pair_args(small_pair)], capsys)
    assert code == 0, err
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_a_figure_too_large_is_refused_naming_the_limit_and_options(small_pair, tmp_path, rgb_image, capsys):
    save_image(tmp_path / "in" / "a.png")
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", *pair_args(small_pair),
                        "--layout", "neurons", "--top", "64", "--panel-size", "2048"], capsys)
    assert code == 2 and "above the limit of 64" in err and "--panel-size" in err and "--top" in err
    assert not (tmp_path / "out").exists()
    code, _, err = run(["neurons", rgb_image, *pair_args(small_pair), "--top", "64", "--panel-size", "2048",
                        "-o", tmp_path / "n.png"], capsys)
    assert code == 2 and "above the limit of 64" in err and not (tmp_path / "n.png").exists()


@pytest.mark.parametrize("target", ["checkpoint", "labels"])
def test_evaluate_json_may_not_be_a_checkpoint_or_the_data_sets_labels(own_pair, tmp_path, capsys, target):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels.csv").write_text("file,label\n")
    victim = own_pair[0] if target == "checkpoint" else data / "labels.csv"
    before = victim.read_bytes()
    code, _, err = run(["evaluate", data, "--baseline", own_pair[0], "--nc", own_pair[1], "--device", "cpu",
                        "--json", victim], capsys)
    assert code == 2 and victim.read_bytes() == before and str(victim) in err


@pytest.mark.parametrize("name", ["summary.json", "index.html", "a.png"])
def test_batch_replaces_a_fifo_among_its_outputs_without_reading_it(small_pair, tmp_path, name):
    import subprocess
    import sys

    save_image(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / name)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "nc_viz", "batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                           "--skip-existing", *map(str, pair_args(small_pair))],
                          capture_output=True, text=True, timeout=120, env=env)  # reading the FIFO would block
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / name).is_file() and (tmp_path / "out" / "a.png").stat().st_size > 0
