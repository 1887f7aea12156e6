"""`ncviz sweep`: the recipe's schedule, resumable runs, the table and plot, torchrun shards."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nc_viz.tasks.training import recipe as recipe_module
from nc_viz.models.checkpoints import load_checkpoint
from nc_viz.cli import main
from nc_viz.tasks.training.recipe import Recipe, crop_and_flip
from nc_viz.tasks.training.sweep import PAPER_TABLE1, SweepSettings, run_sweep

from conftest import fake_cifar100, torchrun

TINY = SweepSettings(arch="resnet20", reductions=(2, 8), seeds=1, train_count=96, test_count=48, size=16,
                     recipe=Recipe(epochs=1, batch_size=32, milestones=(1,)))
TINY_ARGS = ["--reductions", "2,8", "--seeds", "1", "--epochs", "1", "--milestones", "1", "--batch-size", "32",
             "--train-count", "96", "--test-count", "48", "--size", "16", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _models(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((out / "runs").glob("*/model.pt"))}


def _events(log: list):
    return lambda kind, info: log.append((kind, info.get("run", info.get("variant"))))


# ----------------------------------------------------------------------------- the recipe


def test_published_schedule_is_the_recipe_default():
    r = Recipe()
    assert (r.lr, r.momentum, r.nesterov, r.weight_decay, r.batch_size, r.epochs) == (0.1, 0.9, False, 1e-4, 128, 160)
    assert [r.lr_at(e) for e in (1, 119)] == [0.1, 0.1]
    assert r.lr_at(120) == pytest.approx(0.01) and r.lr_at(139) == pytest.approx(0.01)
    assert r.lr_at(140) == pytest.approx(0.001) and r.lr_at(160) == pytest.approx(0.001)


def test_each_epoch_trains_at_the_recipes_rate(tmp_path, monkeypatch):
    settings = SweepSettings(reductions=(8,), seeds=1, train_count=32, test_count=16, size=16,
                             recipe=Recipe(epochs=4, batch_size=32, milestones=(2, 4), gamma=0.5, lr=0.2))
    seen: list[float] = []
    real = recipe_module.train_epoch

    def spy(state, *args, **kwargs):  # the rate the optimizer holds while the epoch trains
        row = real(state, *args, **kwargs)
        seen.append(state.optimizer.param_groups[0]["lr"])
        return row

    monkeypatch.setattr(recipe_module, "train_epoch", spy)
    run_sweep(settings, tmp_path, device="cpu")
    expected = [settings.recipe.lr_at(e) for e in range(1, 5)]
    assert expected == pytest.approx([0.2, 0.1, 0.1, 0.05])
    assert seen == pytest.approx(expected * 2)  # baseline, then alpha 8
    with open(tmp_path / "runs" / "nc-a8-s0" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected)
    assert all(float(r["seconds"]) > 0 and 0 <= float(r["accuracy"]) <= 1 for r in rows)


def test_crop_and_flip_shift_by_the_offset_and_pad_with_zeros():
    images = torch.arange(2 * 4 * 4 * 3, dtype=torch.uint8).view(2, 4, 4, 3) + 1
    out = crop_and_flip(images, torch.tensor([[0, 0], [2, 2]]), torch.tensor([False, True]), pad=2)
    assert torch.equal(out[0, 2:, 2:], images[0, :2, :2]) and (out[0, :2] == 0).all()
    assert torch.equal(out[1], images[1].flip(1))  # offset 2 = the pad: no shift, then flipped


# ----------------------------------------------------------------------------- the sweep


def test_tiny_sweep_writes_table_plot_logs_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    real_optimizer, decays = recipe_module.make_optimizer, []

    def optimizer_spy(model, recipe):  # the weight decay each run's optimiser really holds
        optimizer = real_optimizer(model, recipe)
        decays.append([group["weight_decay"] for group in optimizer.param_groups])
        return optimizer

    monkeypatch.setattr(recipe_module, "make_optimizer", optimizer_spy)
    events: list = []
    result = run_sweep(TINY, tmp_path, device="cpu", on_event=_events(events))
    assert sorted(_models(tmp_path)) == ["baseline-s0", "nc-a2-s0", "nc-a8-s0"]
    assert [e for e in events if e[0] == "start"] == [("start", n) for n in ("baseline-s0", "nc-a2-s0", "nc-a8-s0")]
    for name in ("table.md", "table.json", "accuracy_vs_alpha.png", "accuracy_vs_alpha.pdf", "recipe.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    table = json.loads((tmp_path / "table.json").read_text())
    rows = {r["alpha"]: r for r in table["rows"]}
    assert set(rows) == {None, 2, 8} and all(row["paper"] is None for row in rows.values())  # not CIFAR-100
    assert rows[2]["params"] > rows[8]["params"] > rows[None]["params"] > 0
    assert rows[2]["flops"] > rows[None]["flops"] > 0
    assert rows[8]["accuracy_mean"] == pytest.approx(100 * result.results["nc-a8-s0"]["test_accuracy"], abs=1e-4)
    assert json.loads((tmp_path / "recipe.json").read_text())["weight_decay"] == 1e-4  # the recipe as written
    assert decays == [[1e-4]] * 3                                                      # and as run, each model
    md = (tmp_path / "table.md").read_text()
    assert "| nc | 8 | 1 |" in md and "paper" not in md and "69.34" not in md  # the paper's column: CIFAR-100 only
    assert md.count("\u00b1 \u2013 |") == 3 and "\u00b1 0.00" not in md               # one seed: no spread
    assert (tmp_path / "runs" / "nc-a2-s0" / "log.csv").read_text().startswith("epoch,loss,accuracy,lr,seconds\n")
    meta = load_checkpoint(tmp_path / "runs" / "nc-a2-s0" / "model.pt").meta
    assert meta.reduction == 2 and meta.extra["test_accuracy"] == result.results["nc-a2-s0"]["test_accuracy"]
    before = _models(tmp_path)
    events.clear()
    run_sweep(TINY, tmp_path, device="cpu", on_event=_events(events))
    assert not [e for e in events if e[0] in ("start", "epoch")] and _models(tmp_path) == before
    assert len(decays) == 3                                                            # no optimiser made again


class Killed(Exception):
    pass


def test_an_interrupted_sweep_resumes_to_the_same_checkpoints(tmp_path, monkeypatch):
    settings = SweepSettings(arch="resnet20", reductions=(4,), seeds=1, train_count=64, test_count=32, size=16,
                             recipe=Recipe(epochs=3, batch_size=16, milestones=(2,)))
    run_sweep(settings, tmp_path / "whole", device="cpu")
    real, calls = recipe_module.train_epoch, []

    def dies_in_the_fifth_epoch(*args, **kwargs):  # baseline: epochs 1-3; NC: killed during its epoch 2
        calls.append(1)
        if len(calls) == 5:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe_module, "train_epoch", dies_in_the_fifth_epoch)
    with pytest.raises(Killed):
        run_sweep(settings, tmp_path / "cut", device="cpu")
    nc_run = tmp_path / "cut" / "runs" / "nc-a4-s0"
    assert (nc_run / "resume.pt").is_file() and not (nc_run / "model.pt").exists()
    assert len((nc_run / "log.csv").read_text().splitlines()) == 2  # header and epoch 1
    monkeypatch.setattr(recipe_module, "train_epoch", real)
    events: list = []
    run_sweep(settings, tmp_path / "cut", device="cpu", on_event=lambda k, i: events.append((k, i.get("epoch"))))
    assert [e for e in events if e[0] == "epoch"] == [("epoch", 2), ("epoch", 3)]  # only NC's last two epochs
    assert _models(tmp_path / "cut") == _models(tmp_path / "whole")  # byte for byte
    assert not (nc_run / "resume.pt").exists()
    assert (tmp_path / "cut" / "table.json").read_text() == (tmp_path / "whole" / "table.json").read_text()


def test_other_settings_into_the_same_folder_are_refused(tmp_path, capsys):
    assert main(["sweep", "-o", str(tmp_path), *TINY_ARGS]) == 0
    capsys.readouterr()
    assert main(["sweep", "-o", str(tmp_path), *TINY_ARGS, "--lr", "0.05"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a sweep of other settings" in err


def test_bad_knobs_name_their_option(capsys):
    assert main(["sweep", "--milestones", "140,120"]) == 2
    assert "--milestones" in capsys.readouterr().err
    assert main(["sweep", "--reductions", "2,x"]) == 2
    assert "--reductions" in capsys.readouterr().err
    assert main(["sweep", "--arch", "resnet20_nc"]) == 2
    assert "plain architecture" in capsys.readouterr().err


def test_cifar100_sweep_on_a_fake_data_set(tmp_path, monkeypatch, capsys):
    fake_cifar100(tmp_path / "data", n_train=48, n_test=24)
    code = main(["sweep", "--data", "cifar100", "--data-dir", str(tmp_path / "data"), "-o", str(tmp_path / "out"),
                 "--reductions", "8", "--seeds", "1", "--epochs", "1", "--batch-size", "24", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    meta = load_checkpoint(tmp_path / "out" / "runs" / "nc-a8-s0" / "model.pt").meta
    assert meta.num_classes == 100 and meta.input_size == 32 and meta.stem_stride == 1 and meta.reduction == 8
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    assert table["settings"]["data"] == "cifar100" and "train_count" not in table["settings"]
    md = (tmp_path / "out" / "table.md").read_text()
    assert "CIFAR-100" in md and "| paper (%) |" in md and f"| {PAPER_TABLE1[8]:.2f} |" in md
    assert table["rows"][1]["paper"] == PAPER_TABLE1[8] and table["rows"][0]["paper"] is None


# ----------------------------------------------------------------------------- torchrun


@pytest.mark.serial  # two ranks of its own
def test_torchrun_two_processes_give_the_table_of_one(tmp_path, capsys):
    assert main(["sweep", "-o", str(tmp_path / "single"), *TINY_ARGS]) == 0
    proc = torchrun(["sweep", *TINY_ARGS, "--threads", "1", "-o", tmp_path / "sharded"], timeout=240,
                    env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("written:") == 1  # rank 0 alone writes the table
    assert (tmp_path / "sharded" / "table.json").read_text() == (tmp_path / "single" / "table.json").read_text()
    assert _models(tmp_path / "sharded") == _models(tmp_path / "single")


# ----------------------------------------------------------------------------- CUDA (a GPU machine: pytest -m cuda)



@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentation_on_cuda_equals_the_cpu():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 32, 32, 3), generator=g, dtype=torch.uint8)
    offsets, flips = torch.randint(0, 9, (64, 2), generator=g), torch.rand(64, generator=g) < 0.5
    cpu = crop_and_flip(images, offsets, flips, 4)
    gpu = crop_and_flip(images.cuda(), offsets.cuda(), flips.cuda(), 4)
    assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sweep_on_cuda_trains_resumes_and_writes_the_table(tmp_path, monkeypatch):
    settings = SweepSettings(arch="resnet20", reductions=(8,), seeds=1, train_count=256, test_count=64, size=32,
                             recipe=Recipe(epochs=2, batch_size=64, milestones=(2,)))
    real, calls = recipe_module.train_epoch, []

    def dies_in_the_fourth_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe_module, "train_epoch", dies_in_the_fourth_epoch)
    with pytest.raises(Killed):
        run_sweep(settings, tmp_path, device="cuda")
    monkeypatch.setattr(recipe_module, "train_epoch", real)
    result = run_sweep(settings, tmp_path, device="cuda")
    assert set(result.results) == {"baseline-s0", "nc-a8-s0"}
    assert (tmp_path / "table.md").is_file() and (tmp_path / "accuracy_vs_alpha.png").is_file()
    meta = load_checkpoint(tmp_path / "runs" / "nc-a8-s0" / "model.pt").meta
    assert meta.reduction == 8 and 0 <= meta.extra["test_accuracy"] <= 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_command_on_cuda_writes_a_loadable_pair(tmp_path, capsys):
    code = main(["train", "-o", str(tmp_path), "--device", "cuda", "--train-count", "128", "--val-count", "32",
                 "--epochs", "1", "--batch-size", "32", "--size", "32"])
    assert code == 0, capsys.readouterr().err
    assert load_checkpoint(tmp_path / "nc.pt").meta.reduction == 8


def test_cuda_that_is_not_there_is_one_clear_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["sweep", "-o", str(tmp_path), *TINY_ARGS[:-2], "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda" in err


def test_a_second_sweep_into_a_folder_being_written_is_refused(tmp_path, capsys):
    from nc_viz.core.lock import FolderLock

    tmp_path.mkdir(exist_ok=True)
    with FolderLock(tmp_path) as held:
        held.acquire()
        assert main(["sweep", "-o", str(tmp_path), *TINY_ARGS]) == 1
    assert "is writing into this folder" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()


def test_a_killed_sweep_process_resumes_to_the_same_checkpoints(tmp_path):
    """SIGKILL (no clean-up at all) once the first epoch's resume file appears; rerun; compare."""
    import signal
    import time

    args = ["sweep", "--reductions", "4", "--seeds", "1", "--epochs", "2", "--milestones", "2", "--batch-size", "32",
            "--train-count", "160", "--test-count", "32", "--size", "16", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "nc_viz", *args, "-o", str(tmp_path / "cut")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resume = tmp_path / "cut" / "runs" / "baseline-s0" / "resume.pt"
    deadline = time.monotonic() + 120
    while not resume.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert resume.exists() and not (resume.parent / "model.pt").exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    whole = subprocess.run([*command[:-1], str(tmp_path / "whole")], env=env, capture_output=True, text=True,
                           timeout=240)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert _models(tmp_path / "cut") == _models(tmp_path / "whole")
    assert (tmp_path / "cut" / "table.json").read_text() == (tmp_path / "whole" / "table.json").read_text()


def test_train_takes_a_device_option(capsys):
    assert main(["train", "--device", "tpu"]) == 2
    assert "not a device" in capsys.readouterr().err


def test_milestones_scale_with_the_epochs_as_published():
    assert Recipe.for_epochs(160).milestones == (120, 140) == Recipe().milestones
    assert Recipe.for_epochs(8).milestones == (6, 7)
    assert Recipe.for_epochs(2).milestones == (2,) and Recipe.for_epochs(1).milestones == ()
    assert Recipe.for_epochs(10, (3,)).milestones == (3,)
