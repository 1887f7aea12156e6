"""`ncviz evaluate` against a hostile or careless user: the promises `batch` keeps (tests/test_hostile.py),
kept by evaluate too: no output replaces an input, every output problem is found before any work,
a second writer is refused, any file name is recorded, a killed run leaves nothing a rerun keeps."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nc_viz.cli import main
from conftest import run, save_image

QUICK = ["--bootstrap", "5", "--workers", "0", "--device", "cpu"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """6 synthetic images for the shipped demo pair, in every layout (make-data)."""
    data = tmp_path_factory.mktemp("eval-hostile") / "d"
    assert main(["make-data", str(data), "--count", "6", "--seed", "4"]) == 0
    return data


@pytest.fixture
def data(made, tmp_path) -> Path:
    """A copy of `made` that a test may change (or lose)."""
    return Path(shutil.copytree(made, tmp_path / "d"))


def replace_line(path: Path, start: str, new: str) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(new if line.startswith(start) else line for line in lines) + "\n")


def subprocess_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **extra)


# ----------------------------------------------------------------------------- no output replaces an input


@pytest.mark.parametrize("case", ["wsol bad box", "wsol no label", "cub other split"])
def test_records_may_not_replace_a_file_of_an_image_left_out(data, tmp_path, capsys, case):
    """An image listed by the annotations but left out (a bad box, no label, another split) is
    still an input: --records onto it (or onto its mask) is refused and the file stays."""
    if case == "wsol bad box":     # every box of 00001 has no extent: the image is dropped
        replace_line(data / "wsol" / "localization.txt", "images/00001.png", "images/00001.png,5,5,5,5")
        args, victim = [data / "wsol", "--format", "wsol", "--images", data], data / "images" / "00001.png"
    elif case == "wsol no label":  # 00001 has no class label: dropped with its mask
        meta = wsol_with_masks(data, "masks/00000.png")
        replace_line(meta / "class_labels.txt", "images/00001.png", "")
        args, victim = [meta, "--format", "wsol", "--images", data], data / "masks" / "00001.png"
    else:                          # 00001 is a training image: --split test leaves it out
        replace_line(data / "cub" / "train_test_split.txt", "2 ", "2 1")
        args, victim = [data / "cub", "--format", "cub", "--images", data / "images"], data / "images" / "00001.png"
    before = victim.read_bytes()
    code, _, err = run(["evaluate", *args, "--records", victim, *QUICK], capsys)
    assert code == 2 and f"{victim}: is also" in err and len(err.strip().splitlines()) <= 2
    assert victim.read_bytes() == before


def wsol_with_masks(data: Path, mask_of_first: str) -> Path:
    """wsol metadata over `data` with a mask per image (the first image's mask at `mask_of_first`)."""
    meta = data / "wsol-masks"
    meta.mkdir()
    rows = [line.split(",") for line in (data / "labels.csv").read_text().splitlines()[1:]]
    (meta / "image_ids.txt").write_text("".join(f"{r[0]}\n" for r in rows))
    (meta / "class_labels.txt").write_text("".join(f"{r[0]},{r[1]}\n" for r in rows))
    masks = [mask_of_first] + [f"masks/{Path(r[0]).name}" for r in rows[1:]]
    first, own = data / mask_of_first, data / "masks" / Path(rows[0][0]).name
    if first != own:
        first.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(own, first)   # a PNG, whatever its name
    (meta / "localization.txt").write_text("".join(f"{r[0]},{m},\n" for r, m in zip(rows, masks)))
    return meta


def test_save_maps_may_not_replace_an_input_mask(data, capsys):
    """The maps' paths (DIR/<role>/<image_id>.npy) are known once the data is read: checked then."""
    meta = wsol_with_masks(data, "out/baseline/images/00000.png.npy")
    victim = data / "out" / "baseline" / "images" / "00000.png.npy"
    before = victim.read_bytes()
    code, _, err = run(["evaluate", meta, "--format", "wsol", "--images", data, "--save-maps", data / "out",
                        *QUICK], capsys)
    assert code == 2 and f"{victim}: is also a mask of the data set" in err
    assert victim.read_bytes() == before and not (data / "out" / "nc").exists()


# ----------------------------------------------------------------------------- found before any work


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if any model is loaded (the first work evaluate does)."""
    from nc_viz import pair as api

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the outputs were checked")

    monkeypatch.setattr(api, "load_model_pair", refuse)


@pytest.mark.parametrize("case", ["report under a file", "maps under a file", "report.json is a folder"])
def test_an_output_folder_that_cannot_be_written_is_found_before_any_work(made, tmp_path, capsys, no_work, case):
    (tmp_path / "plain").write_text("x")
    if case == "report under a file":
        args, named = ["--report", tmp_path / "plain" / "r"], tmp_path / "plain" / "r"
    elif case == "maps under a file":
        args, named = ["--save-maps", tmp_path / "plain" / "m"], tmp_path / "plain" / "m"
    else:
        (tmp_path / "r" / "report.json").mkdir(parents=True)
        args, named = ["--report", tmp_path / "r"], tmp_path / "r" / "report.json"
    code, _, err = run(["evaluate", made, *args, *QUICK], capsys)
    assert code == 1 and err.startswith(f"error: {named}") and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------------------- odd but legal file names


def folder_data(tmp_path: Path, name: str) -> Path:
    """A `folder` layout of the demo pair's classes: `circle/<name>` and one plain image."""
    root = tmp_path / "classes"
    save_image(root / "circle" / name, size=(64, 64))
    save_image(root / "square" / "plain.png", seed=1, size=(64, 64))
    return root


@pytest.mark.parametrize("name", [os.fsdecode(b"caf\xe9.png"), "a\rb.png", "a\nb, \"c\".png"],
                         ids=["not-utf8", "carriage-return", "newline-comma-quote"])
def test_records_round_trip_any_file_name(tmp_path, capsys, name):
    from nc_viz.tasks.evaluate.records import read_records

    root = folder_data(tmp_path, name)
    code, out, err = run(["evaluate", root, "--format", "folder", "--report", tmp_path / "r", *QUICK], capsys)
    assert code == 0, err
    rows = read_records(tmp_path / "r" / "records.csv")
    assert [(r["image_id"], r["role"]) for r in rows] == [
        (f"circle/{name}", "baseline"), (f"circle/{name}", "nc"), ("square/plain.png", "baseline"),
        ("square/plain.png", "nc")]
    report = json.loads((tmp_path / "r" / "report.json").read_bytes().decode("utf-8"))
    assert report["images"] == 2 and report["results"]["baseline"]["accuracy"] == pytest.approx(
        np.mean([r["correct"] for r in rows if r["role"] == "baseline"]))


def test_a_long_legal_name_gets_its_maps_and_its_figure(tmp_path, capsys):
    """A 245-byte stem: `<name>.npy` fits in 255 bytes, `.<name>.<hex>.part` would not."""
    stem = "x" * 245
    root = folder_data(tmp_path, f"{stem}.png")
    code, _, err = run(["evaluate", root, "--format", "folder", "--save-maps", tmp_path / "m", *QUICK], capsys)
    assert code == 0, err
    for role in ("baseline", "nc"):
        folder = tmp_path / "m" / role / "circle"
        assert sorted(p.name for p in folder.iterdir()) == [f"{stem}.png.npy"]
        assert np.load(folder / f"{stem}.png.npy").shape == (64, 64)
    code, _, err = run(["batch", root / "circle", "-o", tmp_path / "figs", "--device", "cpu"], capsys)
    assert code == 0, err
    assert (tmp_path / "figs" / f"{stem}.png").is_file()
    assert not [p for p in (tmp_path / "figs").iterdir() if p.name.endswith(".part")]


def test_temporary_names_of_long_names_fit_and_stay_apart():
    from nc_viz.core.io import NAME_MAX, temporary_prefix

    a, b = "é" * 120 + "a.npy", "é" * 120 + "b.npy"   # 245 bytes each, one head
    assert temporary_prefix("short.png") == ".short.png."
    for name in (a, b):
        assert len(os.fsencode(temporary_prefix(name) + "0123abcd.part")) <= NAME_MAX
    assert temporary_prefix(a) != temporary_prefix(b) and temporary_prefix(a).startswith(".éé")


# ----------------------------------------------------------------------------- NaN weights


def nan_demo_pair(tmp_path: Path) -> list[Path]:
    """The shipped demo pair, re-saved with NaN weights in the baseline's classifier."""
    import torch

    from nc_viz.pair import default_checkpoints
    from nc_viz.models.checkpoints import load_checkpoint, save_checkpoint

    paths = []
    for role, src in zip(("baseline", "nc"), default_checkpoints()):
        loaded = load_checkpoint(src)
        if role == "baseline":
            with torch.no_grad():
                loaded.model.fc.weight.fill_(float("nan"))
        paths.append(save_checkpoint(tmp_path / "nan" / Path(src).name, loaded.model, loaded.meta))
    return paths


def test_nan_weights_are_said_counted_and_never_significant(made, tmp_path, capsys):
    base, nc = nan_demo_pair(tmp_path)
    code, out, err = run(["evaluate", made, "--baseline", base, "--nc", nc, "--report", tmp_path / "r",
                          "--bootstrap", "50", "--workers", "0", "--device", "cpu"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "not finite" in line]
    assert len(warnings) == 1 and "baseline" in warnings[0] and "6 image" in warnings[0]
    report = json.loads((tmp_path / "r" / "report.json").read_text(), parse_constant=float)
    assert report["non_finite_outputs"] == {"baseline": 6, "nc": 0}
    assert report["intervals"] == {}
    assert " * " not in out and " *|" not in out and "outputs not finite" in out


# ----------------------------------------------------------------------------- one writer per folder


@pytest.mark.parametrize("flag", ["--report", "--save-maps"])
def test_a_second_evaluate_into_a_folder_being_written_is_refused(made, tmp_path, capsys, flag):
    from nc_viz.core.lock import FolderLock

    folder = tmp_path / "out"
    folder.mkdir()
    with FolderLock(folder) as other:
        other.acquire()
        code, _, err = run(["evaluate", made, flag, folder, *QUICK], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert f"{folder}: another ncviz" in err and f"(pid {os.getpid()}" in err and "is writing into" in err
        assert sorted(p.name for p in folder.iterdir()) == [".ncviz-batch.lock"]
    code, _, err = run(["evaluate", made, flag, folder, *QUICK], capsys)
    assert code == 0, err
    assert not (folder / ".ncviz-batch.lock").exists()


def test_the_refusal_names_the_command_that_holds_the_folder(tmp_path, monkeypatch):
    from nc_viz.tasks.training import sweep
    from nc_viz.core.errors import NcVizError
    from nc_viz.core.lock import FolderLock

    refusals = []

    def second_writer(out, *args, **kwargs):  # runs while the sweep holds its folder
        with pytest.raises(NcVizError) as refused:
            FolderLock(out, command="batch").acquire()
        refusals.append(str(refused.value))
        raise NcVizError("stop here")

    monkeypatch.setattr(sweep, "_train_runs", second_writer)
    with pytest.raises(NcVizError, match="stop here"):
        sweep.run_sweep(sweep.SweepSettings(reductions=(8,), seeds=1), tmp_path / "out", device="cpu")
    assert len(refusals) == 1 and re.search(r"another ncviz sweep \(pid \d+ on ", refusals[0]), refusals


def test_taking_over_a_stale_lock_writes_the_pid_from_the_start(tmp_path):
    from nc_viz.core.lock import LOCK_NAME, FolderLock

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(f"{dead.stdout.strip()} a-host-with-a-long-name.example.org batch\n")
    with FolderLock(tmp_path) as lock:
        lock.acquire()
        text = (tmp_path / LOCK_NAME).read_bytes()
    assert b"\0" not in text and text.decode().split()[0] == str(os.getpid())


# ----------------------------------------------------------------------------- float options


def float_options():
    import click

    from nc_viz.cli import COMMANDS, cli

    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        for param in command.params if command else ():
            if isinstance(param.type, (click.FloatRange, type(click.FLOAT))):
                yield name, param


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_option_refuses_numbers_that_are_not_finite(value):
    import click

    options = list(float_options())
    assert {(name, p.name) for name, p in options} >= {("evaluate", "pointing_tolerance"), ("batch", "alpha")}
    for name, param in options:
        with pytest.raises(click.BadParameter, match="not a finite number"):
            param.type.convert(value, param, None)


def test_pointing_tolerance_nan_is_a_usage_error(made, capsys, no_work):
    code, _, err = run(["evaluate", made, "--pointing-tolerance", "nan", *QUICK], capsys)
    assert code == 2 and "--pointing-tolerance" in err and "not a finite number" in err
    assert len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- full disk, killed runs


def child_processes(pid: int) -> list[int]:
    """The pids of `pid`'s children (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def dead_shm_files() -> set[str]:
    """torch shared-memory files in /dev/shm whose creating process is gone."""
    shm = Path("/dev/shm")
    names = {p.name for p in shm.iterdir() if p.name.startswith("torch_")} if shm.is_dir() else set()
    return {n for n in names if n.split("_")[1].isdigit() and not alive(int(n.split("_")[1]))}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and /dev/shm as on Linux")
def test_a_file_size_limit_with_decode_workers_fails_in_one_line(made, tmp_path):
    """`ulimit -f 40` stands in for a full disk: the workers' shared memory cannot grow."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)   # as a shell leaves it (Python then ignores it)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, 40 * 1024))

    before = dead_shm_files()
    child = subprocess.Popen([sys.executable, "-m", "nc_viz", "evaluate", str(made), "--workers", "1",
                              "--bootstrap", "5", "--device", "cpu", "--records", str(tmp_path / "rec.csv")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                             preexec_fn=limit, start_new_session=True)
    try:
        _, err = child.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("evaluate hung when the decode workers could not hand their images over")
    assert child.returncode == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "shared memory" in lines[0] and "File too large" in lines[0], err
    assert not (tmp_path / "rec.csv").exists()
    assert dead_shm_files() - before == set()


KILLED_RUN = """
import os, sys, time
from nc_viz.tasks.evaluate.decode import EvalImages
decode = EvalImages._decode
def slow(self, position, sample):
    if position == 1:   # the worker stops in the middle of a decode
        open(os.environ["WORKER_PID_FILE"], "w").write(str(os.getpid()))
        time.sleep(300)
    return decode(self, position, sample)
EvalImages._decode = slow
from nc_viz.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def killed(made, tmp_path_factory):
    """An evaluate killed with SIGKILL while its decode worker is busy and its records are half
    written: its temporary folder, its report folder and what was alive 5 s after the kill."""
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc and PR_SET_PDEATHSIG are Linux's")
    base = tmp_path_factory.mktemp("killed")
    tmp, report, pid_file = base / "tmp", base / "report", base / "worker.pid"
    tmp.mkdir()
    worker = None
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, "evaluate", str(made), "--workers", "1",
                              "--batch-size", "1", "--bootstrap", "5", "--device", "cpu", "--report", str(report)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                             env=subprocess_env(TMPDIR=str(tmp), WORKER_PID_FILE=str(pid_file)))
    try:
        deadline = time.monotonic() + 240
        while not pid_file.exists() or not pid_file.read_text():
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        time.sleep(5)
        survived = alive(worker)
    finally:   # nothing of this test outlives it, whatever happened
        for pid in (child.pid, worker):
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)
        child.wait()
    return {"tmp": tmp, "report": report, "worker_survived": survived}


def test_a_decode_worker_dies_with_its_killed_parent(killed):
    assert not killed["worker_survived"]


def test_a_rerun_removes_what_a_killed_run_left(killed, made, capsys, monkeypatch):
    import tempfile

    tmp, report = killed["tmp"], killed["report"]
    assert [p.name for p in tmp.iterdir() if p.name.startswith("ncviz-eval-")]          # what SIGKILL leaves
    assert [p.name for p in report.iterdir() if p.name.startswith(".records.csv.")]
    someone_elses = [report / ".notes.txt.0123abcd.part", report / "mine.part", tmp / "ncviz-eval-x"]
    for path in someone_elses:
        path.write_text("not evaluate's")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    code, _, err = run(["evaluate", made, "--report", report, *QUICK], capsys)
    assert code == 0, err
    assert not [p for p in report.iterdir() if p.name.startswith(".records.csv.")]
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("ncviz-eval-")) == ["ncviz-eval-x"]
    assert all(p.read_text() == "not evaluate's" for p in someone_elses)
