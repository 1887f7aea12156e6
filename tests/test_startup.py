"""Start-up: a command on the demo pair imports only what it needs (no torchvision, timm or
torch's compiler), and what replaced torchvision at registration and preprocessing gives the same
values as torchvision itself."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.models import get_arch, list_archs
from nc_viz.models.preprocessing import Preprocess

HEAVY = ("torchvision", "timm", "torch._dynamo", "pytorch_grad_cam", "scipy")


def test_the_cli_and_the_demo_pair_import_no_torchvision(tmp_path):
    image = tmp_path / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(image)
    code = f"""
import sys
import nc_viz.cli, nc_viz.models, nc_viz.tasks.figures
from nc_viz.cli import main
rc = main(["compare", {str(image)!r}, "-o", {str(tmp_path / "fig.png")!r}, "--device", "cpu"])
assert rc == 0, rc
print("imported:" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "imported:", proc.stdout
    assert (tmp_path / "fig.png").stat().st_size > 0


@pytest.mark.parametrize("name", [n for n in list_archs() if dict(get_arch(n).details).get("weights")])
def test_recorded_weights_preprocessing_is_torchvisions(name):
    from nc_viz.models.torchvision_family import weights_preprocessing

    spec = get_arch(name)
    details = dict(spec.details)
    preprocess, recorded = weights_preprocessing(spec.base, details["weights"])
    assert spec.preprocess == preprocess
    assert details["interpolation"] == dict(recorded)["interpolation"]


def test_regnet_depths_are_torchvisions():
    from nc_viz.models.regnet import DEPTHS, REGNETS, regnet_params

    assert set(DEPTHS) == set(REGNETS)
    for name in REGNETS:
        assert DEPTHS[name] == tuple(regnet_params(name).depths), name
        assert get_arch(name).block_counts == DEPTHS[name]


@pytest.mark.parametrize("size", [(40, 30), (30, 40), (64, 64), (33, 97), (500, 375), (7, 9), (255, 256)])
@pytest.mark.parametrize("pre", [Preprocess(32, crop_pct=1.0), Preprocess(224), Preprocess(64, center_crop=False),
                                 Preprocess(30, crop_pct=0.9), Preprocess(17, crop_pct=1.5)])
def test_resize_and_crop_give_torchvisions_pixels(size, pre):
    from torchvision.transforms.v2 import functional as TF

    w, h = size
    img = Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8))
    bilinear = TF.InterpolationMode.BILINEAR
    if pre.center_crop:
        ref = TF.center_crop(TF.resize(img, pre.resize_size, interpolation=bilinear, antialias=True),
                             [pre.input_size] * 2)
    else:
        ref = TF.resize(img, [pre.input_size] * 2, interpolation=bilinear, antialias=True)
    ours = pre.crop(img)
    assert ours.size == ref.size and np.array_equal(np.asarray(ours), np.asarray(ref))


def test_loading_a_small_checkpoint_leaves_the_global_rng_alone(small_pair):
    from nc_viz.pair import load_model_pair

    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    pair = load_model_pair(*small_pair, device="cpu")
    assert torch.equal(torch.rand(4), expected)
    assert not any(p.is_meta for loaded in pair.roles.values() for p in loaded.model.parameters())


def test_a_family_head_registered_by_name_is_found_without_importing_its_class():
    from nc_viz.models import Head, build_model, head_of

    with torch.device("meta"):
        model = build_model("densenet121", 10)
    assert head_of(model) == Head(features="features", take="output", activation="relu", classifier="classifier",
                                  target_layer="features")
