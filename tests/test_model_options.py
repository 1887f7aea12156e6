"""Models that are not ImageNet or the demo (README "Making a checkpoint ncviz reads"): a pair that is not a pair,
--class-names, `ncviz classes`, the preprocessing options, and the README's checkpoint example."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run

README = Path(__file__).resolve().parent.parent / "README.md"
NAMES = ("circle", "square", "triangle", "star", "cross")


def save(path: Path, arch: str, classes: int = 5, names=None, mean=(0.485, 0.456, 0.406)) -> Path:
    from nc_viz.models.checkpoints import ModelMeta, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess
    from nc_viz.models import build_model

    torch.manual_seed(0)
    nc = arch.endswith("_nc")
    meta = ModelMeta(arch=arch, num_classes=classes, class_names=names,
                     preprocess=Preprocess(32, mean, crop_pct=1.0),
                     reduction=8 if nc else None, placement="stages" if nc else None)
    return save_checkpoint(path, build_model(arch, classes, input_size=32), meta)


@pytest.fixture(scope="module")
def nameless_pair(tmp_path_factory) -> tuple[Path, Path]:
    """resnet20 / resnet20_nc with 5 classes and no class names (as a CIFAR training run leaves them)."""
    d = tmp_path_factory.mktemp("nameless")
    return save(d / "base.pt", "resnet20"), save(d / "nc.pt", "resnet20_nc")


@pytest.fixture
def names_file(tmp_path: Path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- a pair that is not a pair


def test_different_base_architectures_warn_once_naming_both(tmp_path, caplog):
    from nc_viz.pair import load_model_pair

    base, nc = save(tmp_path / "r20.pt", "resnet20"), save(tmp_path / "r32_nc.pt", "resnet32_nc")
    with caplog.at_level(logging.WARNING):
        load_model_pair(base, nc, device="cpu")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert all(s in warnings[0] for s in (str(base), "resnet20", str(nc), "resnet32_nc"))


def test_a_mixed_pair_warns_in_one_line_on_the_command_line(tmp_path, rgb_image, capsys):
    base, nc = save(tmp_path / "r20.pt", "resnet20"), save(tmp_path / "r32_nc.pt", "resnet32_nc")
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert code == 0 and len(lines) == 1 and "resnet20" in lines[0] and "resnet32_nc" in lines[0]


def test_different_class_counts_are_an_error_naming_both(tmp_path, rgb_image, capsys):
    base, nc = save(tmp_path / "r20.pt", "resnet20", classes=5), save(tmp_path / "nc.pt", "resnet20_nc", classes=7)
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png"], capsys)
    assert code == 1 and err.count("\n") == 1 and str(base) in err and str(nc) in err and "5" in err and "7" in err


def test_two_baselines_named_on_purpose_stay_silent(tmp_path, caplog):
    from nc_viz.pair import load_model_pair

    base, other = save(tmp_path / "r20.pt", "resnet20"), save(tmp_path / "r32.pt", "resnet32")
    with caplog.at_level(logging.WARNING):
        load_model_pair(base, other, nc_arch="resnet32", device="cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_true_pair_stays_silent(small_pair, caplog):
    from nc_viz.pair import load_model_pair

    with caplog.at_level(logging.WARNING):
        load_model_pair(*small_pair, device="cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_preprocessing_options_that_cover_the_difference_silence_its_warning(tmp_path, caplog):
    from nc_viz.pair import load_model_pair
    from nc_viz.models.preprocessing import PreprocessOverride

    base, nc = save(tmp_path / "b.pt", "resnet20"), save(tmp_path / "n.pt", "resnet20_nc", mean=(0.5, 0.5, 0.5))
    for override, warns in ((None, True), (PreprocessOverride(input_size=40), True),
                            (PreprocessOverride(mean=(0.4, 0.4, 0.4)), False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            load_model_pair(base, nc, device="cpu", preprocess=override)
        assert ("differ in preprocessing" in caplog.text) == warns, override


# ----------------------------------------------------------------------------- --class-names


def test_class_names_reach_target_json_and_provenance(nameless_pair, names_file, rgb_image, tmp_path, capsys):
    base, nc = nameless_pair
    report = tmp_path / "n.json"
    code, _, err = run(["neurons", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "n.png",
                        "--json", report, "--top", "2", "--target", "star", "--class-names", names_file], capsys)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["images"][0]["baseline"]["class"] == 3 and data["images"][0]["baseline"]["class_name"] == "star"
    assert data["provenance"]["class_names"] == str(names_file)
    assert data["provenance"]["target"] == {"rule": "class", "class": 3, "name": "star"}


def test_class_names_are_the_figure_titles(nameless_pair, names_file):
    """The caption under a CAM is `<name> <probability>`, not `class 3 ...`."""
    from nc_viz.pair import load_model_pair
    from nc_viz.figures.build import compare_figure

    pair = load_model_pair(*nameless_pair, device="cpu", class_names=names_file)
    result = pair.run(torch.zeros(1, 3, 32, 32), target=2)
    figure = compare_figure(result, pair.class_name)
    assert figure.rows[0].panels[1].caption.startswith("triangle ")


def test_batch_uses_the_class_names(nameless_pair, names_file, rgb_image, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(rgb_image.read_bytes())
    base, nc = nameless_pair
    code, _, err = run(["batch", src, "-o", tmp_path / "out", "--baseline", base, "--nc", nc, "--workers", "0",
                        "--class-names", names_file], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"][0]["baseline"]["name"] in NAMES
    assert "class_names" in summary["settings"]  # another names file draws other figures


def test_a_class_count_mismatch_is_a_one_line_usage_error(nameless_pair, tmp_path, rgb_image, capsys):
    names = tmp_path / "four.txt"
    names.write_text("a\nb\nc\nd\n")
    base, nc = nameless_pair
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png",
                        "--class-names", names], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {names}: ")
    assert "4 class names" in err and "5 classes" in err


def test_an_empty_line_among_the_names_is_an_error(tmp_path):
    from nc_viz.models.class_names import read_class_names
    from nc_viz.core.errors import UsageError

    path = tmp_path / "gap.txt"
    path.write_text("a\n\nb\n")
    with pytest.raises(UsageError, match="line 2 is empty"):
        read_class_names(path)


# ----------------------------------------------------------------------------- ncviz classes


def test_classes_lists_the_names_target_accepts(small_pair, capsys):
    base, nc = small_pair
    code, out, _ = run(["classes", "--baseline", base, "--nc", nc], capsys)
    assert code == 0 and out.splitlines() == [f"{i}\t{n}" for i, n in enumerate(NAMES)]


def test_classes_of_the_demo_pair_and_of_a_file(names_file, capsys):
    code, out, _ = run(["classes"], capsys)
    assert code == 0 and out.splitlines()[0] == "0\tcircle" and len(out.splitlines()) == 9
    code, out, _ = run(["classes", "--class-names", names_file], capsys)
    assert code == 0 and out.splitlines()[3] == "3\tstar"


def test_classes_of_nameless_checkpoints(nameless_pair, names_file, tmp_path, capsys):
    base, nc = nameless_pair
    code, out, err = run(["classes", "--baseline", base, "--nc", nc], capsys)
    assert code == 0 and out.split() == ["0", "1", "2", "3", "4"] and "--class-names" in err
    code, out, _ = run(["classes", "--baseline", base, "--nc", nc, "--class-names", names_file], capsys)
    assert code == 0 and out.splitlines()[4] == "4\tcross"
    short = tmp_path / "short.txt"
    short.write_text("a\n")
    assert run(["classes", "--baseline", base, "--nc", nc, "--class-names", short], capsys)[0] == 2


@pytest.mark.parametrize("args", [["classes", "--help"]])
def test_classes_help_does_not_import_torch(args):
    code = ("import sys\nfrom nc_viz.cli import main\nrc = main(%r)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)" % args)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- preprocessing options


def test_preprocessing_options_override_the_checkpoint(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    maps = tmp_path / "m.npz"
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png",
                        "--save-maps", maps, "--input-size", "40", "--resize", "48", "--mean", "0.5,0.5,0.5",
                        "--std", "0.25, 0.25, 0.25"], capsys)
    assert code == 0, err
    with np.load(maps) as data:
        x, record = data["input"], json.loads(str(data["provenance"]))
    assert x.shape == (1, 3, 40, 40)
    assert x.min() >= (0 - 0.5) / 0.25 - 1e-5 and x.max() <= (1 - 0.5) / 0.25 + 1e-5
    assert record["input"] == {"size": 40, "resize": 48, "crop": "center", "mean": [0.5, 0.5, 0.5],
                               "std": [0.25, 0.25, 0.25], "set_by_options": ["--input-size", "--resize",
                                                                             "--mean", "--std"]}


def test_no_crop_keeps_the_whole_image(small_pair, tmp_path):
    """A wide image whose left quarter is red: a centre crop loses the red, --no-crop keeps it."""
    from nc_viz.pair import load_model_pair
    from nc_viz.models.inputs import load_image
    from nc_viz.models.preprocessing import PreprocessOverride

    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:, :20, 0] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(rgb).save(path)
    img = load_image(path)
    cropped = load_model_pair(*small_pair, device="cpu").preprocess.crop(img)
    whole = load_model_pair(*small_pair, device="cpu", preprocess=PreprocessOverride(no_crop=True)).preprocess
    assert np.asarray(cropped)[:, :, 0].max() < 50
    assert whole.crop(img).size == (32, 32) and np.asarray(whole.crop(img))[:, :4, 0].min() > 200


@pytest.mark.parametrize("args, word", [
    (["--mean", "0.5,0.5"], "--mean"), (["--std", "0.2,0,0.2"], "--std"), (["--mean", "a,b,c"], "--mean"),
    (["--input-size", "64", "--resize", "48"], "--resize"), (["--resize", "48", "--no-crop"], "--no-crop"),
    (["--input-size", "4"], "--input-size"),
])
def test_bad_preprocessing_options_fail_before_any_model_is_loaded(small_pair, rgb_image, tmp_path, capsys,
                                                                  monkeypatch, args, word):
    import nc_viz.pair

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(nc_viz.pair, "load_checkpoint", refuse)
    base, nc = small_pair
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png", *args],
                       capsys)
    assert code == 2 and word in err and err.count("\n") == 1, err


def test_preprocessing_options_enter_the_batch_settings(small_pair, rgb_image, tmp_path, capsys):
    """Another --mean draws other figures: --skip-existing must not keep the old ones."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "a.png").write_bytes(rgb_image.read_bytes())
    base, nc = small_pair
    common = ["batch", src, "-o", out, "--baseline", base, "--nc", nc, "--workers", "0", "--skip-existing"]
    assert run(common, capsys)[0] == 0
    first = json.loads((out / "summary.json").read_text())["settings_tag"]
    assert run([*common, "--mean", "0.5,0.5,0.5"], capsys)[0] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings_tag"] != first and summary["totals"]["written"] == 1
    assert summary["provenance"]["input"]["mean"] == [0.5, 0.5, 0.5]


# ----------------------------------------------------------------------------- the README stays true


def readme_python_block(heading: str) -> str:
    """The first ```python block after `heading` in README.md."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_the_readme_checkpoint_example_runs_and_loads(tmp_path, monkeypatch):
    """Runs the README's own code (extracted from README.md), then checks what it promises."""
    from nc_viz.pair import load_model_pair

    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_block("## Making a checkpoint ncviz reads"), "README.md", "exec"), {})
    pair = load_model_pair("baseline.pt", "nc.pt", device="cpu")
    keys = list(pair.roles["nc"].model.state_dict())
    assert "layer1.cn.fc_in.0.weight" in keys and "layer1.block.0.conv1.weight" in keys
    assert pair.roles["nc"].meta.class_names == ("cat", "dog", "bird") and pair.preprocess.input_size == 32
