"""Shared fixtures: tiny offline models, images of every mode, checkpoint pairs."""
from __future__ import annotations

import os
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
