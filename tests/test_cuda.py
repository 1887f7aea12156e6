"""GPU paths: the same maps on CUDA as on the CPU, autocast, pinned memory, folder runs.

Every test here needs a CUDA device and is skipped without one (CI has none). Run them on a
GPU machine with `pytest -m cuda`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.pair import load_model_pair
from nc_viz.cams.compute import compute_cams
from nc_viz.core.roles import ROLES
from nc_viz.models import build_model
from conftest import run

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def _exact_float32():
    """TF32 convolutions would move the maps by ~1e-3; compare against the CPU in true float32."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> None:
    scale = float(b.abs().max()) or 1.0
    torch.testing.assert_close(a.cpu(), b.cpu(), rtol=rel, atol=rel * scale)


def test_cams_and_neuron_maps_on_cuda_equal_the_cpu(tiny_net):
    torch.manual_seed(2)
    x = torch.randn(4, 3, 16, 16)
    cpu = compute_cams(tiny_net, x, top_k=3)
    gpu = compute_cams(tiny_net.cuda(), x.cuda(), top_k=3)
    assert gpu.cam.device.type == "cuda"
    torch.testing.assert_close(gpu.target.cpu(), cpu.target)
    for name in ("logits", "cam", "contributions", "neuron_maps", "neuron_scores"):
        _close(getattr(gpu, name), getattr(cpu, name))


def test_nc_block_on_cuda_equals_the_cpu():
    torch.manual_seed(3)
    model = build_model("resnet20_nc", 10, input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        got = model.cuda()(x.cuda())
    _close(got, expected)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_pair_on_cuda_returns_float32_maps_on_the_cpu(small_pair, precision):
    base, nc = small_pair
    x = torch.randn(3, 3, 32, 32)
    reference = load_model_pair(base, nc, device="cpu").run(x, top_k=3)
    result = load_model_pair(base, nc, device="cuda").run(x, top_k=3, precision=precision)
    for out in (r.out for r in result.roles.values()):
        assert out.cam.device.type == "cpu" and out.cam.dtype == torch.float32
        assert out.neuron_maps.dtype == torch.float32
    assert result.roles["baseline"].heat.device.type == "cpu"
    rel = 1e-4 if precision == "fp32" else 0.1
    for role in ROLES:
        _close(result.roles[role].out.cam, reference.roles[role].out.cam, rel)
    assert np.array_equal(result.pictures, reference.pictures)


def test_loader_pins_memory_for_cuda(small_pair, tmp_path):
    from nc_viz.engine.decode import ImageFileDataset, make_loader

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(path)
    pair = load_model_pair(*small_pair, device="cuda")
    loader = make_loader(ImageFileDataset([path], pair.preprocess), 1, 0, pin_memory=True)
    batch = next(iter(loader))
    assert batch.x.is_pinned()


def _images(folder: Path, count: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


@pytest.mark.parametrize("layout", ["compare", "neurons"])
def test_batch_on_cuda_predicts_and_draws_what_the_cpu_run_does(small_pair, tmp_path, capsys, layout):
    src = tmp_path / "in"
    _images(src, 5)
    base, nc = small_pair
    common = ["--baseline", base, "--nc", nc, "--layout", layout, "--workers", "1", "--batch-size", "2"]
    code, _, err = run(["batch", src, "-o", tmp_path / "cpu", *common, "--device", "cpu"], capsys)
    assert code == 0, err
    code, _, err = run(["batch", src, "-o", tmp_path / "gpu", *common, "--device", "cuda"], capsys)
    assert code == 0, err
    cpu = json.loads((tmp_path / "cpu" / "summary.json").read_text())
    gpu = json.loads((tmp_path / "gpu" / "summary.json").read_text())
    assert gpu["totals"] == cpu["totals"] == {"images": 5, "written": 5, "skipped": 0, "failed": 0}
    for a, b in zip(gpu["images"], cpu["images"]):
        assert (a["baseline"]["class"], a["nc"]["class"]) == (b["baseline"]["class"], b["nc"]["class"])
        assert a["baseline"]["probability"] == pytest.approx(b["baseline"]["probability"], abs=1e-3)
        with Image.open(tmp_path / "gpu" / a["output"]) as g, Image.open(tmp_path / "cpu" / b["output"]) as c:
            diff = np.abs(np.asarray(g, dtype=np.int16) - np.asarray(c, dtype=np.int16))
        assert diff.mean() < 0.5, f"{a['output']}: the CUDA figure differs from the CPU one"


def test_batch_on_cuda_in_bf16_writes_every_figure(small_pair, tmp_path, capsys):
    src = tmp_path / "in"
    _images(src, 4)
    base, nc = small_pair
    code, _, err = run(["batch", src, "-o", tmp_path / "out", "--baseline", base, "--nc", nc,
                        "--device", "cuda", "--precision", "bf16"], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


def test_a_cuda_index_past_the_last_device_is_a_clear_error(small_pair, rgb_image, tmp_path, capsys):
    base, nc = small_pair
    index = torch.cuda.device_count()
    code, _, err = run(["compare", rgb_image, "--baseline", base, "--nc", nc, "--device", f"cuda:{index}",
                        "-o", tmp_path / "f.png"], capsys)
    assert code == 1 and f"cuda:{index}" in err and "Traceback" not in err
