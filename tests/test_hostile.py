"""Attacks a hostile or careless user could make (issue 9): each must fail cleanly, destroy no
file, and never lose a folder run's summary and gallery."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nc_viz.cli import main


def run(args, capsys):
    code = main([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pair_args(small_pair) -> list:
    base, nc = small_pair
    return ["--baseline", base, "--nc", nc, "--device", "cpu"]


def save_image(path: Path, seed: int = 0, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


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
    from nc_viz import api

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
