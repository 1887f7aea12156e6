"""What a new user meets first: a pair's repr, evaluate on classes the models do not know, the
README's evaluate formats, and usage errors that come before torch is imported."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run, save_image
from nc_viz.models import count_parameters
from nc_viz.pair import default_checkpoints, load_model_pair

DEMO = default_checkpoints()


def test_repr_of_a_pair_is_one_line_per_model(small_pair):
    pair = load_model_pair(*small_pair, device="cpu")
    lines = repr(pair).splitlines()
    assert lines[0] == "ModelPair(" and lines[-1] == ")" and len(lines) == 4
    for line, (role, loaded) in zip(lines[1:3], pair.roles.items()):
        assert line.startswith(f"  {role}: {loaded.meta.arch}")
        assert f"{count_parameters(loaded.model):,} parameters" in line and str(loaded.path) in line
    assert "reduction 8, placement stages" in lines[2] and "Conv2d" not in repr(pair)
    assert "\n" not in repr(pair.baseline)


def test_evaluate_accepts_every_format_the_readme_and_the_readers_name(tmp_path, capsys):
    from nc_viz.cli.evaluate import command
    from nc_viz.datasets.registry import reader_names

    choices = next(p.type.choices for p in command.params if p.name == "data_format")
    assert list(choices) == ["auto", *reader_names()]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"evaluate[^\n`]*--format (\w+)", readme)) | set(re.findall(r"`--format (\w+)`", readme))
    assert "images" in documented and documented & set(reader_names()) <= set(choices)
    # a folder of unlabelled images, named as the README names it
    for i in range(3):
        save_image(tmp_path / "imgs" / f"{i}.png", seed=i, size=(36, 36))
    code, out, err = run(["evaluate", tmp_path / "imgs", "--format", "images", "--bootstrap", "0",
                          "--baseline", str(DEMO[0]), "--nc", str(DEMO[1]), "--device", "cpu"], capsys)
    assert code == 0, err
    assert re.search(r"\| images scored \|[^\n]*\| 3 \|", out)


def _without_torch(args: list) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter; exit 99 if it imported torch."""
    code = ("import sys\nfrom nc_viz.cli import main\nrc = main(%r)\n"
            "sys.exit(99 if 'torch' in sys.modules else rc)" % [str(a) for a in args])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["compare", "{img}", "-o", "{out}/f.png", "--format", "pdf"], "the name says png, --format says pdf"),
    (["compare", "{img}", "-o", "{out}/f.jpg"], ".jpg is not a format ncviz writes"),
    (["neurons", "{img}", "-o", "{out}/f.svg", "--format", "png"], "the name says svg, --format says png"),
    (["compare", "{img}", "-o", "{out}/f.png", "--titles", "a,b"], "--titles"),
    (["compare", "{img}", "-o", "{out}/f.png", "--titles", "a,b,c,d"], "--titles"),
    (["neurons", "{img}", "-o", "{out}/f.png", "--titles", "a,b"], "--titles"),
    (["neurons", "{img}", "-o", "{out}/f.png", "--method", "gradcam"], "neuron maps need the CAM decomposition"),
])
def test_usage_errors_come_before_torch_is_imported(args, needle, rgb_image, tmp_path):
    proc = _without_torch([a.format(img=rgb_image, out=tmp_path) for a in args])
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("error: ") and needle in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert not any(tmp_path.glob("f.*"))


def test_neurons_help_lists_only_the_methods_it_accepts(capsys):
    from nc_viz.cams.methods import method_names, neuron_methods

    code, out, _ = run(["neurons", "--help"], capsys)
    assert code == 0
    listed = re.search(r"^\s+--method \[([\w+|]+)\]", out, re.M).group(1).split("|")
    assert listed == list(neuron_methods()) and set(method_names()) - set(listed)
    assert not any(name in out for name in set(method_names()) - set(neuron_methods()))


def test_evaluate_on_classes_the_models_do_not_know_names_them_and_writes_the_report(tmp_path, capsys):
    import json

    from nc_viz.models.checkpoints import load_checkpoint

    for name in ("cat", "dog", "eel", "fox"):
        save_image(tmp_path / "data" / name / "a.png", size=(36, 36))
    report = tmp_path / "report"
    code, _, err = run(["evaluate", tmp_path / "data", "--report", report, "--bootstrap", "0",
                        "--baseline", str(DEMO[0]), "--nc", str(DEMO[1]), "--device", "cpu"], capsys)
    classes = load_checkpoint(DEMO[0], device="cpu").meta.class_names
    assert code == 1 and "cat" not in classes
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: {tmp_path / 'data'}: no image could be scored (0 failed, 4 annotation problems)")
    # the first three problems by name, the rest counted, the classes the models know, where the list is
    assert "cat: folder is not a class of the models; dog: folder is not a class of the models; eel:" in line
    assert "; and 1 more;" in line and "fox" not in line
    assert f"the models' classes: {', '.join(classes)}" in line and str(report / "report.md") in line
    md = (report / "report.md").read_text(encoding="utf-8")
    assert all(f"- {name}: folder is not a class of the models" in md for name in ("cat", "dog", "eel", "fox"))
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))["data"]
    assert data["problems"] == 4 and data["model_classes"] == list(classes) and data["scored"] == 0
    assert len(data["problem_list"]) == 4
