"""What `ncviz evaluate` writes may never replace what it reads; what it reports is what it did."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.pair import load_model_pair
from nc_viz.cli import main
from nc_viz.models.inputs import load_image
from nc_viz.datasets import Sample, read_annotated
from nc_viz.tasks.evaluate import EvalOptions, evaluate_dataset
from conftest import run


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("eval-out") / "d"
    assert main(["make-data", str(data), "--count", "6", "--seed", "4"]) == 0
    return data


def test_records_may_not_replace_an_annotation_file(made, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(made, data)
    target = data / "wsol" / "localization.txt"
    before = target.read_bytes()
    code, _, err = run(["evaluate", data / "wsol", "--format", "wsol", "--images", data, "--records", target,
                        "--bootstrap", "5", "--workers", "0"], capsys)
    assert code == 2 and "localization.txt: is also an annotation file of the data set" in err
    assert target.read_bytes() == before


def test_json_may_not_replace_an_image_and_outputs_must_differ(made, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(made, data)
    image = sorted((data / "images").iterdir())[0]
    before = image.read_bytes()
    code, _, err = run(["evaluate", data, "--json", image, "--bootstrap", "5", "--workers", "0"], capsys)
    assert code == 2 and "data set" in err and image.read_bytes() == before
    same = tmp_path / "same.out"
    code, _, err = run(["evaluate", data, "--json", same, "--records", same, "--bootstrap", "5", "--workers", "0"],
                       capsys)
    assert code == 2 and "is also another output" in err and not same.exists()


def test_resize_does_not_apply_and_nothing_scored_is_a_failure(made, tmp_path, capsys):
    code, _, err = run(["evaluate", made, "--resize", "80"], capsys)
    assert code == 2 and "--resize" in err
    empty = tmp_path / "classes"
    for name in ("circle", "square"):
        (empty / name).mkdir(parents=True)
    code, _, err = run(["evaluate", empty, "--format", "folder", "--class-names", made / "classes.txt"], capsys)
    assert code == 1 and "no image could be scored" in err


def test_the_report_says_the_models_saw_the_whole_image_and_where_the_records_are(made, tmp_path, capsys):
    report, records = tmp_path / "r", tmp_path / "elsewhere.csv"
    code, _, _ = run(["evaluate", made, "--report", report, "--records", records, "--bootstrap", "5",
                      "--workers", "0"], capsys)
    assert code == 0 and records.exists()
    payload = json.loads((report / "report.json").read_text())
    assert payload["provenance"]["input"]["crop"] == "none" and payload["provenance"]["input"]["resize"] is None
    assert payload["records"] == str(records) and str(records) in (report / "report.md").read_text()


def test_images_are_read_as_stored_like_the_reference(tmp_path):
    """Boxes are in stored pixels: evaluate must not apply the EXIF rotation the figures apply."""
    from nc_viz.tasks.evaluate.decode import EvalImages

    path = tmp_path / "rotated.jpg"
    picture = Image.fromarray(np.tile(np.arange(60, dtype=np.uint8)[None, :, None] * 4, (40, 1, 3)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    picture.save(path, exif=exif)
    assert load_image(path).size == (40, 60) and load_image(path, exif=False).size == (60, 40)
    pair = load_model_pair(device="cpu")
    preprocess = dataclasses.replace(pair.preprocess, center_crop=False)
    item = EvalImages([Sample("r", path, 0, np.array([[0.0, 0.0, 30.0, 20.0]]))], [0], preprocess)[0]
    assert item.error is None
    torch.testing.assert_close(item.x, preprocess.to_tensor(load_image(path, exif=False)))


def test_map_class_predicted_scores_the_models_own_class(made):
    """With every label moved to another class, true-class maps are of a class the model did not
    see; predicted-class maps are the model's own, so the numbers differ."""
    pair = load_model_pair(device="cpu")
    dataset = read_annotated(made, "ncviz")
    wrong = dataclasses.replace(dataset, samples=[dataclasses.replace(s, label=(s.label + 1) % 9) for s in dataset.samples])
    options = dict(bootstrap=5, workers=0)
    true = evaluate_dataset(pair, wrong, EvalOptions(map_class="true", **options))
    predicted = evaluate_dataset(pair, wrong, EvalOptions(map_class="predicted", **options))
    assert true.results["baseline"]["accuracy"] == 0.0
    assert predicted.results["baseline"]["energy"] != true.results["baseline"]["energy"]
    right = evaluate_dataset(pair, dataset, EvalOptions(map_class="true", **options))
    assert predicted.results["baseline"]["energy"] == pytest.approx(right.results["baseline"]["energy"])
