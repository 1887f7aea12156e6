"""What a new user meets first: a pair's repr, evaluate on classes the models do not know, the
README's evaluate formats, and usage errors that come before torch is imported."""
from __future__ import annotations

from pathlib import Path

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
    import re

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
    assert re.search(r"\| images scored \| 3 \|", out)
