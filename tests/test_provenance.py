"""Provenance (README "Provenance: what drew an output"): every figure, --json, --save-maps and
summary.json says what drew it."""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pypdf
import pytest
from PIL import Image

from nc_viz import __version__
from nc_viz.figures import png
from nc_viz.figures import raster as render
from nc_viz.cli import main
from conftest import run

DC = "{http://purl.org/dc/elements/1.1/}"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_figure_provenance(path: Path) -> dict:
    """The provenance record a PNG (tEXt), PDF (Info: Subject) or SVG (dc:description) carries."""
    if path.suffix == ".png":
        with Image.open(path) as img:
            text = img.text["ncviz-provenance"]
            assert img.text["Software"] == f"ncviz {__version__}"
    elif path.suffix == ".pdf":
        info = pypdf.PdfReader(path).metadata
        assert info["/Creator"] == f"ncviz {__version__}"
        text = info["/Subject"]
    else:
        root = ET.parse(path).getroot()
        text = root.find(f".//{DC}description").text
        assert root.find(f".//{DC}creator//{DC}title").text == f"ncviz {__version__}"
    return json.loads(text)


def check_models(record: dict, small_pair) -> None:
    base, nc = small_pair
    models = record["models"]
    assert set(models) == {"baseline", "nc"}
    assert models["baseline"]["sha256"] == sha256(base) and models["nc"]["sha256"] == sha256(nc)
    assert models["baseline"]["path"] == str(base) and models["nc"]["path"] == str(nc)
    assert (models["baseline"]["arch"], models["nc"]["arch"]) == ("resnet20", "resnet20_nc")
    assert models["nc"]["reduction"] == 8 and models["nc"]["placement"] == "stages"
    assert record["ncviz"] == __version__ and record["schema"] == "ncviz.provenance/1"


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_every_figure_format_carries_the_provenance(small_pair, rgb_image, tmp_path, capsys, fmt):
    base, nc = small_pair
    out = tmp_path / f"fig.{fmt}"
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", out, "--cmap", "viridis",
                        "--scale", "shared", "--device", "cpu"], capsys)
    assert code == 0, err
    record = read_figure_provenance(out)
    check_models(record, small_pair)
    assert record["method"] == "cam" and record["target"] == {"rule": "predicted"}
    assert (record["cmap"], record["scale"], record["alpha"]) == ("viridis", "shared", 0.5)
    assert record["top_k"] is None and record["rank_by"] is None
    assert record["input"] == {"size": 32, "resize": 32, "crop": "center", "mean": [0.485, 0.456, 0.406],
                               "std": [0.229, 0.224, 0.225], "set_by_options": []}
    assert (record["device"], record["precision"]) == ("cpu", "fp32")
    assert record["class_names"] == "checkpoint"


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_vector_figures_with_provenance_are_byte_identical_across_reruns(small_pair, rgb_image, tmp_path,
                                                                         capsys, fmt):
    base, nc = small_pair
    outs = [tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"]
    for out in outs:
        assert run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", out], capsys)[0] == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_neurons_json_and_maps_carry_the_same_provenance_as_the_figure(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    fig, report, maps = tmp_path / "n.png", tmp_path / "n.json", tmp_path / "m.npz"
    code, _, err = run(["neurons", rgb_image, "--baseline", base, "--nc", nc, "-o", fig, "--json", report,
                        "--save-maps", maps, "--top", "3", "--rank-by", "activation", "--target", "star"], capsys)
    assert code == 0, err
    record = json.loads(report.read_text())["provenance"]
    check_models(record, small_pair)
    assert (record["top_k"], record["rank_by"]) == (3, "activation")
    assert record["target"] == {"rule": "class", "class": 3, "name": "star"}
    assert read_figure_provenance(fig) == record
    with np.load(maps) as data:  # a plain string array: no pickle needed
        assert json.loads(str(data["provenance"])) == record


def test_batch_summary_figures_and_gallery_carry_the_provenance_hashing_once(small_pair, rgb_image, tmp_path,
                                                                             capsys, monkeypatch):
    import nc_viz.tasks.batch.summary
    import nc_viz.tasks.provenance

    calls = []
    real = nc_viz.tasks.provenance.file_sha256

    def counting(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(nc_viz.tasks.batch.summary, "file_sha256", counting)
    monkeypatch.setattr(nc_viz.tasks.provenance, "file_sha256", counting)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes(rgb_image.read_bytes())
    base, nc = small_pair
    code, _, err = run(["batch", src, "-o", out, "--baseline", base, "--nc", nc, "--device", "cpu",
                        "--layout", "neurons", "--top", "2", "--workers", "0"], capsys)
    assert code == 0, err
    assert sorted(calls) == sorted([Path(base), Path(nc)])  # each checkpoint hashed once per run
    summary = json.loads((out / "summary.json").read_text())
    record = summary["provenance"]
    check_models(record, small_pair)
    assert record["top_k"] == 2 and record["rank_by"] == "contribution"
    for figure in ("a.png", "b.png"):
        assert read_figure_provenance(out / figure) == record
        assert png.png_text(out / figure)["ncviz-settings"] == summary["settings_tag"]  # resume tag kept
    html = (out / "index.html").read_text()
    head = html.split('<div class="grid">')[0]
    assert sha256(base) in head and sha256(nc) in head and "resnet20_nc" in head and "method cam" in head


def test_evaluate_json_carries_the_provenance(tmp_path, capsys):
    from nc_viz.pair import default_checkpoints

    data, scores = tmp_path / "heldout", tmp_path / "scores.json"
    assert main(["make-data", str(data), "--count", "4", "--seed", "3", "--size", "64"]) == 0
    code, _, err = run(["evaluate", data, "--json", scores, "--top", "4", "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads(scores.read_text())["provenance"]
    base, nc = default_checkpoints()
    assert record["models"]["baseline"]["sha256"] == sha256(base)
    assert record["models"]["nc"]["sha256"] == sha256(nc)
    assert record["target"] == {"rule": "ground truth"} and record["top_k"] == 4


def test_encode_writes_figure_meta_into_every_format():
    rgb = np.zeros((8, 8, 3), np.uint8)
    meta = {"Software": "ncviz test", "ncviz-provenance": json.dumps({"a": "é"}, ensure_ascii=True)}
    figure = render.Figure([render.Row([render.Panel(rgb, caption="x")])], panel_size=32, meta=meta)
    encoded = render.encode(figure, "png")
    import io

    with Image.open(io.BytesIO(encoded)) as img:
        assert img.text == meta
    info = pypdf.PdfReader(io.BytesIO(render.encode(figure, "pdf"))).metadata
    assert info["/Subject"] == meta["ncviz-provenance"] and info["/Creator"] == "ncviz test"
    root = ET.fromstring(render.encode(figure, "svg"))
    assert root.find(f".//{DC}description").text == meta["ncviz-provenance"]
