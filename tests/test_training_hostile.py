"""Folders and files handed over by someone else, read by `sweep` and `train`: a resume file, a
run's result, the sweep's settings, a CIFAR-100 folder, a class-names file. None may run code,
hang the run, or end in an internal error; none of the shipped checkpoints may be overwritten."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nc_viz.cli import main
from nc_viz.tasks.training.recipe import RESUME_NAME, RESULT_NAME
from nc_viz.tasks.training.sweep import SETTINGS_NAME, plan_runs

from conftest import fake_cifar100
from test_sweep import TINY, TINY_ARGS


class _Payload:
    """Unpickling this creates the file `marker`: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _first_run(out: Path) -> Path:
    run = out / "runs" / plan_runs(TINY)[0].name
    run.mkdir(parents=True)
    return run


def _sweep(out: Path, capsys) -> tuple[int, str]:
    code = main(["sweep", "-o", str(out), *TINY_ARGS])
    return code, capsys.readouterr().err


def _one_line_naming(err: str, path: Path) -> None:
    errors = [line for line in err.strip().splitlines() if line.startswith("error")]  # progress lines aside
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}:"), err
    assert "internal error" not in err and "interrupted" not in err


def test_a_resume_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys):
    out, marker = tmp_path / "sweep", tmp_path / "ran-code"
    resume = _first_run(out) / RESUME_NAME
    torch.save({"tag": TINY.tag, "epoch": 0, "rows": [], "x": _Payload(marker)}, resume)
    code, err = _sweep(out, capsys)
    assert not marker.exists(), "loading the resume file ran code from it"
    assert code == 1
    _one_line_naming(err, resume)
    assert "would run code" in err


@pytest.mark.parametrize("content, reason", [
    (b"", "an empty file"),
    (b"\x00garbage" * 10, "neither a torch.save archive nor a pickle"),
])
def test_an_empty_or_corrupt_resume_file_is_named_not_interrupted(tmp_path, capsys, content, reason):
    out = tmp_path / "sweep"
    resume = _first_run(out) / RESUME_NAME
    resume.write_bytes(content)
    code, err = _sweep(out, capsys)
    assert code == 1
    _one_line_naming(err, resume)
    assert reason in err


def _resume_payload(**change: object) -> dict:
    """A resume file of the tiny sweep's settings at epoch 0, with `change` applied."""
    return {"tag": TINY.tag, "epoch": 0, "rows": [], "model": {}, "optimizer": {},
            "generator": torch.Generator().get_state(), "torch_rng": torch.get_rng_state(), **change}


@pytest.mark.parametrize("change, reason", [
    ({"epoch": "3"}, "epoch"),
    ({"epoch": 99}, "epoch"),
    ({"rows": [{"epoch": 1}]}, "log"),
    ({"model": {"conv1.weight": "not a tensor"}}, "weights"),
    ({"generator": torch.zeros(3, dtype=torch.float32)}, "generator"),
])
def test_a_resume_file_with_wrong_parts_is_named(tmp_path, capsys, change, reason):
    out = tmp_path / "sweep"
    resume = _first_run(out) / RESUME_NAME
    torch.save(_resume_payload(**change), resume)
    code, err = _sweep(out, capsys)
    assert code == 1
    _one_line_naming(err, resume)
    assert reason in err


def test_a_resume_file_of_mismatched_weights_is_named(tmp_path, capsys):
    out = tmp_path / "sweep"
    resume = _first_run(out) / RESUME_NAME
    torch.save(_resume_payload(model={"fc.weight": torch.zeros(2, 2)}), resume)
    code, err = _sweep(out, capsys)
    assert code == 1
    _one_line_naming(err, resume)


def _ncviz(*args: object, timeout: int = 120) -> subprocess.CompletedProcess:
    """ncviz in a process of its own: a FIFO that is read blocks it, and the timeout says so."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nc_viz", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_fifo_as_resume_file_is_named_not_read(tmp_path):
    out = tmp_path / "sweep"
    resume = _first_run(out) / RESUME_NAME
    os.mkfifo(resume)
    done = _ncviz("sweep", "-o", out, *TINY_ARGS)
    assert done.returncode == 1
    _one_line_naming(done.stderr, resume)
    assert "FIFO" in done.stderr


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not JSON"),
    ("[1, 2]", "a JSON list"),
    (json.dumps({"tag": TINY.tag, "test_accuracy": "0.9", "epochs": 1}), "test_accuracy"),
    (json.dumps({"tag": TINY.tag, "test_accuracy": 7.5, "epochs": 1}), "test_accuracy"),
])
def test_a_corrupt_run_result_is_named(tmp_path, capsys, text, reason):
    out = tmp_path / "sweep"
    result = _first_run(out) / RESULT_NAME
    result.write_text(text, encoding="utf-8")
    code, err = _sweep(out, capsys)
    assert code == 1
    _one_line_naming(err, result)
    assert reason in err


def test_a_result_of_another_run_is_not_put_in_the_table(tmp_path, capsys):
    out = tmp_path / "sweep"
    result = _first_run(out) / RESULT_NAME  # the baseline's folder, holding an alpha=8 result
    result.write_text(json.dumps({"tag": TINY.tag, "arch": "resnet20_nc", "reduction": 8, "seed": 0,
                                  "test_accuracy": 0.99, "epochs": 1}), encoding="utf-8")
    code, err = _sweep(out, capsys)
    assert code == 1
    _one_line_naming(err, result)
    assert "another run" in err


@pytest.mark.parametrize("text", ["", "{]", "null", "\xff"])
def test_a_corrupt_sweep_settings_file_is_named(tmp_path, capsys, text):
    out = tmp_path / "sweep"
    out.mkdir()
    settings = out / SETTINGS_NAME
    settings.write_bytes(text.encode("latin-1"))
    code, err = _sweep(out, capsys)
    assert code == 1
    _one_line_naming(err, settings)


def test_a_cifar_folder_that_would_run_code_is_refused(tmp_path, capsys):
    data, marker = tmp_path / "data", tmp_path / "ran-code"
    fake_cifar100(data)
    entry = {"data": np.zeros((4, 3072), np.uint8), "fine_labels": [0, 1, 2, 3], "x": _Payload(marker)}
    (data / "cifar-100-python" / "train").write_bytes(pickle.dumps(entry))
    code = main(["train", "--data", "cifar100", "--data-dir", str(data), "-o", str(tmp_path / "out"),
                 "--epochs", "1", "--batch-size", "4", "--max-steps", "1"])
    err = capsys.readouterr().err
    assert not marker.exists(), "reading the CIFAR-100 folder ran code from it"
    assert code == 1
    _one_line_naming(err, data / "cifar-100-python" / "train")
    assert "would run code" in err


def test_cifar_files_are_read_as_data_equal_to_what_was_pickled(tmp_path):
    from nc_viz.datasets.cifar import read_split

    fake_cifar100(tmp_path, n_train=6, n_test=3)
    entry = pickle.loads((tmp_path / "cifar-100-python" / "test").read_bytes())
    images, labels, classes = read_split(tmp_path, train=False)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    # CIFAR rows are 1024 red values, then green, then blue, each row-major over 32 x 32
    assert images[1, 2, 5, 0] == entry["data"][1][2 * 32 + 5]
    assert images[1, 2, 5, 2] == entry["data"][1][2048 + 2 * 32 + 5]
    assert labels.tolist() == entry["fine_labels"] and classes[7] == "c7"


@pytest.mark.parametrize("where", ["shipped", "env"])
def test_train_never_writes_onto_the_demo_pair(tmp_path, monkeypatch, capsys, where):
    import nc_viz.pair as api

    pair = tmp_path / "pair"  # a copy stands in for the package's own folder: a failure must not cost the real one
    pair.mkdir()
    for name in ("baseline.pt", "nc.pt"):
        (pair / name).write_bytes((api.PRETRAINED_DIR / name).read_bytes())
    if where == "shipped":
        monkeypatch.setattr(api, "PRETRAINED_DIR", pair)
        (tmp_path / "link").symlink_to(pair)  # reached through a link: the same files
        target, expected = tmp_path / "link", "the shipped demo pair"
    else:
        monkeypatch.setenv("NCVIZ_PRETRAINED", str(pair))
        target, expected = pair, "NCVIZ_PRETRAINED"
    before = {p.name: p.read_bytes() for p in pair.glob("*.pt")}
    code = main(["train", "-o", str(target), "--overwrite", "--train-count", "8", "--val-count", "4", "--size", "32",
                 "--epochs", "1", "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert {p.name: p.read_bytes() for p in pair.glob("*.pt")} == before


def test_train_replaces_an_existing_checkpoint_only_when_asked(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "nc.pt").write_bytes(b"hours of training")
    args = ["train", "-o", str(out), "--train-count", "8", "--val-count", "4", "--size", "32", "--epochs", "1",
            "--max-steps", "1"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "nc.pt").read_bytes() == b"hours of training"
    assert main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    assert (out / "nc.pt").read_bytes() != b"hours of training"


@pytest.mark.parametrize("command", ["classes", "compare"])
def test_a_fifo_as_class_names_is_named_not_read(tmp_path, command):
    fifo = tmp_path / "names.txt"
    os.mkfifo(fifo)
    args = [] if command == "classes" else [Path(__file__).resolve().parents[1] / "samples" / "multi_circle.png",
                                            "-o", tmp_path / "fig.png"]
    done = _ncviz(command, *args, "--class-names", fifo)  # reading the FIFO would block until the timeout
    assert done.returncode == 1
    _one_line_naming(done.stderr, fifo)
    assert "FIFO" in done.stderr


def test_a_class_name_of_millions_of_characters_is_a_usage_error(tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("cat\n" + "a" * 5_000_000 + "\ndog\n", encoding="utf-8")
    code = main(["classes", "--class-names", str(names)])
    err = capsys.readouterr().err
    assert code == 2
    _one_line_naming(err, names)
    assert "line 2" in err


def test_checkpoint_metadata_with_an_endless_class_name_is_refused(tmp_path):
    from nc_viz.core.errors import CheckpointError
    from nc_viz.models.meta_checks import check_meta

    meta = {"arch": "resnet20", "num_classes": 2, "class_names": ["cat", "a" * 100_000]}
    with pytest.raises(CheckpointError, match="class_names"):
        check_meta(meta, tmp_path / "m.pt")
