"""Shared fixtures and helpers: tiny offline models, images of every mode, checkpoint pairs, the CLI
run in process, two-rank torchrun runs, and the signatures of PDF and SVG files.

Test files import the plain helpers: `from conftest import run, pair_args, ...`."""
from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

try:
    import fcntl
except ImportError:  # not POSIX: no shared locks, xdist runs serial tests beside the others
    fcntl = None

# No progress line in the middle of a test's captured stderr (the progress tests set their own).
os.environ.setdefault("NCVIZ_PROGRESS_SECONDS", "86400")


@pytest.fixture(autouse=True)
def _serial_lock(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Under pytest-xdist (`make test`), every test holds a shared lock on one file of the run and a
    `serial` test an exclusive one, so a serial test waits for the running tests to end and runs
    alone. Without xdist tests run one at a time anyway."""
    if "PYTEST_XDIST_WORKER" not in os.environ or fcntl is None:
        yield
        return
    # the workers' base temporary folders are popen-gw0, popen-gw1, ... in one folder of the run
    lock = tmp_path_factory.getbasetemp().parent / "serial.lock"
    exclusive = request.node.get_closest_marker("serial") is not None
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


class TinyGapNet(nn.Module):
    """conv -> ReLU -> conv (`layer4`) -> ReLU -> global average pool -> fc: a GAP+FC head."""

    def __init__(self, channels: int = 6, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.layer4 = nn.Sequential(nn.ReLU(), nn.Conv2d(8, channels, 3, stride=2, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.layer4(self.conv1(x))), 1))


@pytest.fixture
def tiny_net() -> TinyGapNet:
    torch.manual_seed(0)
    return TinyGapNet().eval()


def _rgb(size: tuple[int, int] = (40, 30), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """One file per supported kind: JPEG, PNG (RGB, L, P, RGBA, 16-bit), WebP, BMP, TIFF."""
    d = tmp_path / "images"
    d.mkdir()
    rgb = Image.fromarray(_rgb())
    rgb.save(d / "a.jpg")
    rgb.save(d / "b.png")
    rgb.convert("L").save(d / "gray.png")
    rgb.convert("P").save(d / "palette.png")
    rgb.convert("RGBA").save(d / "rgba.png")
    Image.fromarray((np.arange(1200).reshape(30, 40) * 50).astype(np.uint16)).save(d / "deep16.png")
    rgb.save(d / "c.webp")
    rgb.save(d / "d.bmp")
    rgb.save(d / "e.tiff")
    return d


@pytest.fixture(scope="session")
def small_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A resnet20 and a resnet20_nc checkpoint in the project's format (5 classes, 32 px)."""
    from nc_viz.models.checkpoints import ModelMeta, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess
    from nc_viz.core.constants import IMAGENET_MEAN, IMAGENET_STD
    from nc_viz.models import build_model

    d = tmp_path_factory.mktemp("ckpt")
    names = ("circle", "square", "triangle", "star", "cross")
    paths = []
    for seed, arch in enumerate(("resnet20", "resnet20_nc")):
        torch.manual_seed(seed)
        model = build_model(arch, 5, input_size=32)
        meta = ModelMeta(arch=arch, num_classes=5, class_names=names,
                         preprocess=Preprocess(32, IMAGENET_MEAN, IMAGENET_STD, crop_pct=1.0), reduction=8 if arch.endswith("_nc") else None,
                         placement="stages" if arch.endswith("_nc") else None)
        paths.append(save_checkpoint(d / f"{arch}.pt", model, meta))
    return paths[0], paths[1]


@pytest.fixture
def rgb_image(tmp_path: Path) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray(_rgb((48, 40), seed=3)).save(path)
    return path


# ----------------------------------------------------------------------------- helpers


def run(args, capsys) -> tuple[int, str, str]:
    """`ncviz ARGS` in this process: (exit code, stdout, stderr). Paths and numbers are passed as
    strings; bytes (a name that is not UTF-8) as the file system decodes them."""
    from nc_viz.cli import main

    code = main([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pair_args(small_pair) -> list:
    """The options that name `small_pair`'s two checkpoints, on the CPU."""
    base, nc = small_pair
    return ["--baseline", base, "--nc", nc, "--device", "cpu"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NCVIZ = Path(sys.executable).parent / "ncviz"


def torchrun(args, *, timeout: float, script: Path | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """`ncviz ARGS` (or `python SCRIPT ARGS`) as two torchrun ranks on a free local port, one
    thread each and outside any torchrun run of the caller's; `env` adds variables. Output as text."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    full_env["OMP_NUM_THREADS"] = "1"
    full_env.update(env or {})
    program = [str(script)] if script is not None else ["--no-python", str(NCVIZ)]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(free_port()), *program, *map(str, args)],
        check=False, capture_output=True, text=True, timeout=timeout, env=full_env)


def assert_pdf(data: bytes) -> None:
    """A whole PDF file: its header and its end-of-file trailer."""
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), data[:20] + b"..." + data[-20:]


def assert_svg(data: bytes) -> None:
    """An SVG document: an XML declaration and an `svg` root element that parses."""
    assert data.startswith(b"<?xml") and ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"


def assert_vector_file(data: bytes, fmt: str) -> None:
    """`data` carries the signature of `fmt` ("pdf" or "svg")."""
    {"pdf": assert_pdf, "svg": assert_svg}[fmt](data)


def copy_data(made: Path, tmp_path: Path) -> Path:
    """A copy of the data set `made` at `tmp_path / "d"`, for a test that damages it."""
    data = tmp_path / "d"
    shutil.copytree(made, data)
    return data


def save_image(path: Path, seed: int = 0, size: tuple[int, int] = (40, 30)) -> Path:
    """A random RGB PNG (or the format of `path`'s suffix) of `size` (width, height), folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(size, seed)).save(path)
    return path


def black_image(path: Path, w: int = 50, h: int = 40) -> Path:
    """A black RGB image of w x h pixels at `path`, folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(path)
    return path


def write_file(path: Path, text: str, bom: bool = False) -> Path:
    """`text` in UTF-8 (after a byte-order mark if `bom`) at `path`, folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def fake_cifar100(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    """Random pictures and labels in torchvision's CIFAR-100 layout (`root/cifar-100-python`)."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "fine_labels": rng.integers(0, 100, n).tolist()}
        (base / name).write_bytes(pickle.dumps(entry))
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tiny trainings are faster so, and others share the CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
