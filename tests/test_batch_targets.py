"""`batch --targets FILE`: a chosen class per image, checked before any work."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import pair_args, run, save_image, write_file
from nc_viz.cams.compute import PREDICTED, resolve_target
from nc_viz.models.inputs import load_batch
from nc_viz.pair import load_model_pair

NAMES = ("circle", "square", "triangle", "star", "cross")  # small_pair's classes


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i, name in enumerate(("a.png", "b.png", "sub/c.png")):
        save_image(tmp_path / "in" / name, seed=i, size=(36, 32))
    return tmp_path / "in"


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _records(out: Path) -> dict[str, dict]:
    return {r["input"]: r for r in json.loads((out / "summary.json").read_text())["images"]}


def test_each_listed_image_explains_its_class_and_the_others_their_prediction(folder, small_pair, tmp_path, capsys):
    targets = write_file(tmp_path / "t.csv", "image,class\n./a.png,Star\nsub/c.png,1\n", bom=True)
    args = ["batch", folder, "--recursive", *pair_args(small_pair), "--workers", "0"]
    assert run(args + ["-o", tmp_path / "plain"], capsys)[0] == 0
    code, _, err = run(args + ["-o", tmp_path / "chosen", "--targets", targets], capsys)
    assert code == 0, err
    # the probabilities of the chosen classes, computed here from the models themselves
    pair = load_model_pair(*small_pair, device="cpu")
    paths = [folder / "a.png", folder / "b.png", folder / "sub" / "c.png"]
    x = load_batch(paths, pair.preprocess)
    chosen = _records(tmp_path / "chosen")
    for role, loaded in pair.roles.items():
        with torch.no_grad():
            probs = loaded.model(x).softmax(1)
        for i, (name, cls) in enumerate((("a.png", 3), ("b.png", int(probs[1].argmax())), ("sub/c.png", 1))):
            assert chosen[name][role]["class"] == cls and chosen[name][role]["name"] == NAMES[cls]
            assert chosen[name][role]["probability"] == pytest.approx(float(probs[i, cls]), rel=1e-4, abs=1e-6)
    # an image the file does not name is drawn exactly as without the file; a listed one is not
    plain = _records(tmp_path / "plain")
    assert plain["b.png"] == {**chosen["b.png"], "output": plain["b.png"]["output"]}
    assert np.array_equal(_pixels(tmp_path / "plain" / "b.png"), _pixels(tmp_path / "chosen" / "b.png"))
    if plain["a.png"]["baseline"]["class"] != 3:
        assert not np.array_equal(_pixels(tmp_path / "plain" / "a.png"), _pixels(tmp_path / "chosen" / "a.png"))


@pytest.mark.parametrize("text, needle", [
    ("a.png,star\nmissing.png,1\n", "1 image(s) not among the inputs"),
    ("a.png,tringle\n", "line 1: class 'tringle': no class of that name (did you mean triangle?)"),
    ("image,class\na.png,7\n", "line 2: class 7 is out of range: the model has 5 classes"),
    ("a.png,1,2\n", "line 1: 3 fields"),
    ("a.png,1\n./a.png,2\n", "a.png is listed twice (first on line 1)"),
    ("image,class\n", "no image,class row"),
])
def test_an_unknown_image_or_class_fails_before_any_work(text, needle, folder, small_pair, tmp_path, capsys):
    targets = write_file(tmp_path / "t.csv", text)
    out = tmp_path / "out"
    code, _, err = run(["batch", folder, "-o", out, "--targets", targets, *pair_args(small_pair)], capsys)
    assert code == 2, err
    line = err.strip()
    assert line.startswith(f"error: {targets}") and needle in line and "--targets" in line and "\n" not in line
    assert not out.exists()


def test_a_per_image_target_may_leave_an_image_to_its_prediction():
    logits = torch.tensor([[0.1, 2.0, 0.3], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    chosen = resolve_target(logits, torch.tensor([0, PREDICTED, 1]))
    assert chosen.tolist() == [0, 0, 1]
    with pytest.raises(Exception, match="out of range"):
        resolve_target(logits, -1)   # one class for every image: -1 is no class
