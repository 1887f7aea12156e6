"""Option checks a user meets before any work: no model loaded, no torch imported, a hint where one helps."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.cli import main


def _run_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter; exit 99 if it imported torch."""
    code = ("import sys\nfrom nc_viz.cli import main\nrc = main(%r)\n"
            "sys.exit(99 if 'torch' in sys.modules else rc)" % args)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["compare", "{img}", "--cmap", "jett"], "did you mean jet"),
    (["neurons", "{img}", "--top", "0"], "--top"),
    (["neurons", "{img}", "--top", "65"], "--top"),
    (["batch", "{dir}", "-o", "{out}", "--cmap", "viridiss"], "viridis"),
    (["compare", "{img}", "--device", "gpu"], "auto, cpu, cuda or cuda:N"),
])
def test_bad_options_fail_before_torch_is_imported(args, needle, rgb_image, tmp_path):
    filled = [a.format(img=rgb_image, dir=rgb_image.parent, out=tmp_path / "out") for a in args]
    proc = _run_without_torch(filled + (["-o", str(tmp_path / "f.png")] if args[0] != "batch" else []))
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("error: ") and needle in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("typo, suggestion", [("compar", "'compare'"), ("nerons", "'neurons'"), ("bach", "'batch'")])
def test_a_mistyped_command_suggests_the_closest(typo, suggestion, capsys):
    assert main([typo]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no such command '{typo}'") and f"did you mean {suggestion}" in err


def test_an_unknown_command_far_from_any_has_no_suggestion(capsys):
    assert main(["zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "no such command 'zzzzzz'" in err and "did you mean" not in err


def test_debug_traceback_uses_the_three_argument_form(small_pair, tmp_path, capsys, monkeypatch):
    """`--debug` prints the traceback with the call Python 3.9 also has (setup.cfg's floor aside)."""
    import traceback

    calls = []
    monkeypatch.setattr(traceback, "print_exception", lambda *a, **k: calls.append(a))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"nope")
    base, nc = small_pair
    assert main(["--debug", "compare", str(bad), "--baseline", str(base), "--nc", str(nc),
                 "-o", str(tmp_path / "f.png")]) == 1
    assert len(calls) == 1 and len(calls[0]) == 3 and isinstance(calls[0][1], BaseException)


def _tiny_image(path: Path, side: int) -> Path:
    Image.fromarray(np.full((side, side, 3), 120, np.uint8)).save(path)
    return path


def _upscale_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("WARNING:") and "upscaled" in line]


def test_a_tiny_input_is_warned_about_once_per_run(small_pair, tmp_path, capsys):
    """The pair's input is 32 px: 10 px images are upscaled 3.2x (warned), a 20 px one 1.6x (not)."""
    base, nc = small_pair
    tiny = [_tiny_image(tmp_path / f"tiny{i}.png", 10) for i in range(3)]
    assert main(["compare", *map(str, tiny), "--baseline", str(base), "--nc", str(nc), "--device", "cpu",
                 "--batch-size", "1", "-o", str(tmp_path / "f.png")]) == 0
    warnings = _upscale_warnings(capsys.readouterr().err)
    assert len(warnings) == 1 and "10x10 px" in warnings[0] and "tiny0.png" in warnings[0]

    ok = _tiny_image(tmp_path / "ok.png", 20)
    assert main(["compare", str(ok), "--baseline", str(base), "--nc", str(nc), "--device", "cpu",
                 "-o", str(tmp_path / "g.png")]) == 0
    assert not _upscale_warnings(capsys.readouterr().err)


def test_batch_warns_once_about_tiny_inputs(small_pair, tmp_path, capsys):
    base, nc = small_pair
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        _tiny_image(folder / f"t{i}.png", 8)
    assert main(["batch", str(folder), "-o", str(tmp_path / "out"), "--baseline", str(base), "--nc", str(nc),
                 "--device", "cpu", "--workers", "0", "--batch-size", "2"]) == 0
    assert len(_upscale_warnings(capsys.readouterr().err)) == 1


def test_default_batch_size_follows_the_device(small_pair, rgb_image, tmp_path, monkeypatch):
    """Without --batch-size: 8 images per forward pass on the CPU, 128 on CUDA (each measured best there)."""
    import nc_viz.tasks.figures as workflows
    from nc_viz.pair import default_batch_size

    assert default_batch_size(torch.device("cpu")) == 8
    assert default_batch_size(torch.device("cuda")) == 128
    sizes = []
    real = workflows.load_batch
    monkeypatch.setattr(workflows, "load_batch", lambda paths, *a, **k: sizes.append(len(paths)) or real(paths, *a, **k))
    base, nc = small_pair
    images = [str(rgb_image)] * 10
    assert main(["compare", *images, "--baseline", str(base), "--nc", str(nc), "--device", "cpu",
                 "-o", str(tmp_path / "f.png")]) == 0
    assert sizes == [8, 2]


def test_batch_takes_small_inputs_in_larger_passes_on_a_cpu(small_pair, rgb_image, tmp_path, monkeypatch):
    """`batch` without --batch-size on a CPU: passes of about the input pixels of 8 images of
    224 px, between 8 and 32 images (64 px: 8 * 12.25 -> 32; 160 px: 8 * 1.96 -> 15); on CUDA
    and from 224 px on, the device's default."""
    import shutil

    import nc_viz.tasks.batch.shard as shard
    from nc_viz.pair import figure_batch_size

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [figure_batch_size(cpu, s) for s in (32, 64, 112, 160, 223, 224, 299)] == [32, 32, 32, 15, 8, 8, 8]
    assert figure_batch_size(cuda, 64) == 128
    sizes = []
    real = shard.make_loader
    monkeypatch.setattr(shard, "make_loader", lambda dataset, size, *a, **k: sizes.append(size) or real(dataset, size, *a, **k))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        shutil.copy(rgb_image, folder / f"{i}.png")
    base, nc = small_pair
    assert main(["batch", str(folder), "-o", str(tmp_path / "out"), "--baseline", str(base), "--nc", str(nc),
                 "--device", "cpu", "--workers", "0"]) == 0
    from nc_viz.pair import load_model_pair, PairSpec

    size = load_model_pair(PairSpec(str(base), str(nc), device="cpu")).preprocess.input_size
    assert sizes == [figure_batch_size(cpu, size)]


def test_scorecam_draws_no_progress_bar(tiny_net, capfd):
    """grad-cam's ScoreCAM shows a tqdm bar per image; ncviz keeps it off the terminal."""
    pytest.importorskip("pytorch_grad_cam")
    from nc_viz.cams.compute import compute_cams

    compute_cams(tiny_net, torch.randn(1, 3, 16, 16), method="scorecam")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    import tqdm

    assert not isinstance(tqdm.tqdm, type(lambda: 0)) and tqdm.tqdm.__name__ == "tqdm"  # restored
