"""A sweep folder grows by alphas and seeds, folders of one recipe merge, the data are checked
before anything is written, and the table comes as Markdown and LaTeX."""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from nc_viz.cli import main
from nc_viz.core.latex import booktabs_table, escape
from nc_viz.tasks.training import sweep
from nc_viz.tasks.training.recipe import Recipe
from nc_viz.tasks.training.sweep import SETTINGS_NAME, SweepSettings, run_sweep
from nc_viz.tasks.training.sweep_table import render_latex, render_markdown

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = SweepSettings(arch="resnet20", reductions=(8,), seeds=1, train_count=48, test_count=24, size=16,
                      recipe=Recipe(epochs=1, batch_size=24, milestones=()))
SMALL_ARGS = ["--epochs", "1", "--milestones", "", "--batch-size", "24", "--train-count", "48", "--test-count", "24",
              "--size", "16", "--device", "cpu"]


def _models(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((out / "runs").glob("*/model.pt"))}


def _started(events: list) -> list[str]:
    return [info["run"] for kind, info in events if kind == "start"]


def _rows(out: Path) -> dict:
    return {row["alpha"]: row for row in json.loads((out / "table.json").read_text())["rows"]}


# ----------------------------------------------------------------------------- growing a folder


def test_more_alphas_and_seeds_train_only_the_missing_runs(tmp_path):
    events: list = []
    run_sweep(SMALL, tmp_path, device="cpu", on_event=lambda kind, info: events.append((kind, info)))
    assert _started(events) == ["baseline-s0", "nc-a8-s0"]
    first = _models(tmp_path)
    events.clear()
    result = run_sweep(replace(SMALL, reductions=(2, 8), seeds=2), tmp_path, device="cpu",
                       on_event=lambda kind, info: events.append((kind, info)))
    assert _started(events) == ["nc-a2-s0", "baseline-s1", "nc-a2-s1", "nc-a8-s1"]  # the four it lacked
    models = _models(tmp_path)
    assert {name: models[name] for name in first} == first                          # untouched
    rows = _rows(tmp_path)
    assert set(rows) == {None, 2, 8} and all(row["seeds"] == 2 for row in rows.values())
    accuracies = sorted(100 * result.results[name]["test_accuracy"] for name in ("nc-a8-s0", "nc-a8-s1"))
    assert sorted(rows[8]["accuracies"]) == pytest.approx(accuracies, abs=1e-4)
    assert json.loads((tmp_path / SETTINGS_NAME).read_text())["reductions"] == [2, 8]
    events.clear()
    run_sweep(replace(SMALL, reductions=(2,), seeds=1), tmp_path, device="cpu",   # a subset: nothing to train,
              on_event=lambda kind, info: events.append((kind, info)))            # the table keeps every run
    assert _started(events) == [] and set(_rows(tmp_path)) == {None, 2, 8}
    assert _rows(tmp_path)[8]["seeds"] == 2


def test_another_recipe_is_refused_naming_what_differs(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / SETTINGS_NAME).write_text(json.dumps({"tag": SMALL.tag, **SMALL.to_dict()}))  # claimed, nothing run
    assert main(["sweep", "-o", str(out), "--reductions", "2", "--seeds", "1", *SMALL_ARGS, "--lr", "0.05"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a sweep of other settings" in err
    assert "recipe.lr: 0.1 there, 0.05 here" in err
    assert not (out / "runs").exists()


# ----------------------------------------------------------------------------- merging folders


def test_merge_combines_folders_of_one_recipe(tmp_path, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_sweep(SMALL, a, device="cpu")                                    # baseline-s0, nc-a8-s0
    run_sweep(replace(SMALL, reductions=(2,), first_seed=1), b, device="cpu")  # baseline-s1, nc-a2-s1
    capsys.readouterr()
    assert main(["sweep", "--merge", str(a), str(b), "-o", str(c)]) == 0
    err = capsys.readouterr().err
    assert f"{a}: 2 runs copied" in err and f"{b}: 2 runs copied" in err
    models = _models(c)
    assert models == {**_models(a), **_models(b)}                        # byte for byte
    rows = _rows(c)
    assert set(rows) == {None, 2, 8} and rows[None]["seeds"] == 2 and rows[None]["seed_list"] == [0, 1]
    expected = sorted(100 * json.loads((folder / "runs" / name / "result.json").read_text())["test_accuracy"]
                      for folder, name in ((a, "baseline-s0"), (b, "baseline-s1")))
    assert rows[None]["accuracies"] == pytest.approx(expected, abs=1e-4)
    settings = json.loads((c / SETTINGS_NAME).read_text())
    assert settings["tag"] == SMALL.tag and settings["reductions"] == [2, 8] and settings["seeds"] == [0, 1]
    for name in ("table.md", "table.tex", "accuracy_vs_alpha.png", "recipe.json"):
        assert (c / name).stat().st_size > 0, name
    assert main(["sweep", "--merge", str(a), "-o", str(c)]) == 0        # again: nothing copied, said so
    assert "2 run(s) found again" in capsys.readouterr().err and _models(c) == models
    # and the merged folder grows like any other: one more alpha trains only its run
    events: list = []
    run_sweep(replace(SMALL, reductions=(4,)), c, device="cpu", on_event=lambda k, i: events.append((k, i)))
    assert _started(events) == ["nc-a4-s0"] and set(_rows(c)) == {None, 2, 4, 8}


def _claimed(folder: Path, settings: SweepSettings) -> Path:
    folder.mkdir(parents=True)
    (folder / SETTINGS_NAME).write_text(json.dumps({"tag": settings.tag, **settings.to_dict()}))
    return folder


def test_merge_refuses_other_recipes_and_writes_nothing(tmp_path, capsys):
    a = _claimed(tmp_path / "a", SMALL)
    b = _claimed(tmp_path / "b", replace(SMALL, recipe=replace(SMALL.recipe, epochs=2)))
    assert main(["sweep", "--merge", str(a), str(b), "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {b}:") and "recipe.epochs: 2 there, 1 here" in err
    assert not (tmp_path / "c").exists()
    assert main(["sweep", "--merge", str(a), "--lr", "0.05", "-o", str(tmp_path / "c")]) == 2
    assert "--lr: does not apply with --merge" in capsys.readouterr().err
    assert main(["sweep", str(a), "-o", str(tmp_path / "c")]) == 2
    assert "only with --merge" in capsys.readouterr().err


def test_merging_folders_without_a_finished_run_creates_nothing(tmp_path, capsys):
    a, b = _claimed(tmp_path / "a", SMALL), _claimed(tmp_path / "b", SMALL)
    assert main(["sweep", "--merge", str(a), str(b), "-o", str(tmp_path / "c")]) == 1
    assert "no finished run" in capsys.readouterr().err and not (tmp_path / "c").exists()


@pytest.mark.parametrize("result", [
    {"reduction": "../../../outside", "seed": 0},   # a name that would leave the folder
    {"reduction": 8, "seed": 0},                    # another run than its folder's (baseline-s0)
    {"reduction": None, "seed": True},
])
def test_merge_refuses_a_result_that_is_not_its_folders_run(tmp_path, capsys, result):
    a = _claimed(tmp_path / "a", SMALL)
    run = a / "runs" / "baseline-s0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"tag": SMALL.tag, "test_accuracy": 0.5, "epochs": 1, **result}))
    (run / "model.pt").write_bytes(b"x")
    assert main(["sweep", "--merge", str(a), "-o", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'result.json'}: the result of another run") and err.count("\n") == 1
    assert not (tmp_path / "c").exists() and not (tmp_path / "outside").exists()


def test_merge_refuses_an_edited_settings_file(tmp_path, capsys):
    a = _claimed(tmp_path / "a", SMALL)
    settings = json.loads((a / SETTINGS_NAME).read_text())
    (a / SETTINGS_NAME).write_text(json.dumps({**settings, "recipe": {**settings["recipe"], "lr": 0.5}}))
    assert main(["sweep", "--merge", str(a), "-o", str(tmp_path / "c")]) == 1
    assert "do not give its tag" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the data, before any file


@pytest.mark.parametrize("command", ["sweep", "train"])
def test_missing_cifar100_is_refused_before_anything_is_written(tmp_path, capsys, command):
    empty, out = tmp_path / "data", tmp_path / "out"
    empty.mkdir()
    code = main([command, "--data", "cifar100", "--data-dir", str(empty), "-o", str(out), "--epochs", "1",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: {empty / 'cifar-100-python' / 'train'}: no such CIFAR-100 file")
    assert "download=True" not in err and "never fetches" in err
    assert not out.exists()  # no sweep.json or recipe.json to refuse the corrected rerun


def test_a_data_dir_that_is_the_cifar_folder_itself_says_so(tmp_path, capsys):
    from conftest import fake_cifar100

    fake_cifar100(tmp_path)
    inner = tmp_path / "cifar-100-python"
    assert main(["sweep", "--data", "cifar100", "--data-dir", str(inner), "-o", str(tmp_path / "out")]) == 1
    assert "give the folder that holds it" in capsys.readouterr().err


# ----------------------------------------------------------------------------- LaTeX


def test_escape_writes_latex_specials_as_text():
    assert escape("a_b & 50% #1 $x {y} ~ ^ \\") == (r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{} "
                                                  r"\textasciicircum{} \textbackslash{}")
    assert escape("69.20 \u00b1 \u2013\nnext") == r"69.20 $\pm$ -- next"
    with pytest.raises(ValueError):
        booktabs_table(["a", "b"], [["1"]], "lr")


def _table(monkeypatch, data: str, arch: str, seeds: int) -> dict:
    monkeypatch.setattr(sweep, "model_cost", lambda settings, run, num_classes: (1234, 5_000_000))
    settings = SweepSettings(arch=arch, data=data, reductions=(8,), seeds=seeds)
    results = [{"reduction": r, "seed": s, "test_accuracy": 0.5 + 0.01 * s} for r in (None, 8) for s in range(seeds)]
    return sweep.build_table(settings, results)


def test_table_tex_has_the_rows_of_table_md(monkeypatch):
    table = _table(monkeypatch, "cifar100", "resnet20", 1)
    tex, md = render_latex(table), render_markdown(table)
    body = tex[tex.index(r"\midrule") + len(r"\midrule\n"):tex.index(r"\bottomrule")].splitlines()
    header = tex[tex.index(r"\toprule") + len(r"\toprule\n"):tex.index(r"\midrule")].strip()
    assert [line.count(" & ") for line in body] == [header.count(" & ")] * 2 == [6, 6]
    assert body[1] == r"nc & 8 & 1 & 50.00 $\pm$ -- & 69.34 & 1,234 & 5.00 \\"
    assert "| nc | 8 | 1 | 50.00 \u00b1 \u2013 | 69.34 | 1,234 | 5.00 |" in md
    for pair in ((r"\begin{table}", r"\end{table}"), (r"\begin{tabular}{llrrrrr}", r"\end{tabular}")):
        assert tex.count(pair[0]) == tex.count(pair[1]) == 1
    assert tex.count("{") - tex.count(r"\{") == tex.count("}") - tex.count(r"\}")


def test_paper_column_only_for_cifar100_resnet20_and_two_seeds_have_a_spread(monkeypatch):
    for data, arch in (("synthetic", "resnet20"), ("cifar100", "resnet56")):
        table = _table(monkeypatch, data, arch, 2)
        assert "paper" not in render_markdown(table) and "paper" not in render_latex(table)
    md = render_markdown(table)
    assert "50.50 \u00b1 0.71" in md and "\u2013 |" not in md.split("| nc |")[1]  # sample std of 50, 51


def test_table_tex_escapes_an_architecture_name(monkeypatch):
    monkeypatch.setattr(sweep, "model_cost", lambda settings, run, num_classes: (1, 1))
    table = sweep.build_table(SweepSettings(arch="resnet20", reductions=(8,), seeds=1),
                              [{"reduction": 8, "seed": 0, "test_accuracy": 0.5}])
    table["settings"]["arch"] = "timm:res_net&50"
    tex = render_latex(table)
    assert r"timm:res\_net\&50" in tex and "res_net" not in tex


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="no LaTeX engine installed")
def test_table_tex_compiles_in_a_minimal_document(tmp_path, monkeypatch):
    (tmp_path / "table.tex").write_text(render_latex(_table(monkeypatch, "cifar100", "resnet20", 2)))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
                                      "\\input{table.tex}\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
