"""`ncviz sanity`: the similarity measures against hand-computed numbers and scipy, the schedule,
a map that cannot depend on the weights (similarity 1 at every step), CAM falling below 1 once
the classifier is randomised, untouched checkpoints and models, the same seed giving the same
numbers, and the command's outputs."""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from conftest import TinyGapNet, pair_args, run, save_image

from nc_viz.metrics.similarity import (hog_features, hog_pearson, map_similarities, normalise_abs, pearson_rows,
                                       spearman_rows, ssim)


# ----------------------------------------------------------------------------- similarity measures


def test_spearman_equals_scipy_on_fixed_maps_with_ties():
    a = np.array([[[3.0, 1.0, 2.0], [2.0, -5.0, 0.5]], [[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]]])
    b = np.array([[[0.1, 0.4, 0.2], [0.2, 0.9, -1.0]], [[4.0, 3.0, 3.0], [1.0, 2.0, 2.0]]])
    got = spearman_rows(a, b)
    for i in range(2):
        assert got[i] == pytest.approx(spearmanr(a[i].ravel(), b[i].ravel()).statistic, abs=1e-12)
    got_abs = spearman_rows(np.abs(a), np.abs(b))
    assert got_abs[0] == pytest.approx(spearmanr(np.abs(a[0]).ravel(), np.abs(b[0]).ravel()).statistic, abs=1e-12)


def test_spearman_by_hand():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    assert spearman_rows(a, 2 * a + 5)[0] == pytest.approx(1.0)      # any increasing map: same ranks
    assert spearman_rows(a, -a)[0] == pytest.approx(-1.0)
    # ranks 1,2,3,4 against 1,2,4,3: 1 - 6 * (0 + 0 + 1 + 1) / (4 * 15) = 0.8
    assert spearman_rows(a, np.array([[[1.0, 2.0], [4.0, 3.0]]]))[0] == pytest.approx(0.8)
    assert math.isnan(spearman_rows(a, np.ones_like(a))[0])          # a flat map has no ranking


def test_pearson_and_normalisation_by_hand():
    # deviations (-1, 0, 1) and (-7/3, -1/3, 8/3): r = 5 / sqrt(2 * 114 / 9)
    assert pearson_rows(np.array([[1.0, 2.0, 3.0]]), np.array([[2.0, 4.0, 7.0]]))[0] == pytest.approx(
        15 / math.sqrt(228))
    m = np.array([[[-2.0, 1.0], [0.0, 4.0]]])
    assert normalise_abs(m)[0].tolist() == [[0.5, 0.25], [0.0, 1.0]]
    assert normalise_abs(np.full((1, 2, 2), -3.0))[0].tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_ssim_of_constant_maps_is_the_luminance_term():
    # flat maps p and q: no variance, so SSIM = (2 p q + C1) / (p^2 + q^2 + C1), C1 = (0.01 * 1)^2
    p, q = np.full((16, 16), 0.2), np.full((16, 16), 0.6)
    assert ssim(p, q) == pytest.approx((2 * 0.2 * 0.6 + 1e-4) / (0.04 + 0.36 + 1e-4), rel=1e-9)
    rng = np.random.default_rng(0)
    x = rng.random((16, 16))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, 1 - x) < 0      # inverted structure: negative covariance in every window


def test_hog_pearson_by_hand():
    rng = np.random.default_rng(1)
    x = rng.random((32, 32))
    assert hog_pearson(x, x) == pytest.approx(1.0)
    assert hog_pearson(x, 0.5 * x) == pytest.approx(1.0, abs=1e-3)   # blocks are normalised: contrast drops out
    assert math.isnan(hog_pearson(x, np.zeros_like(x)))               # a flat map has no gradient
    ramp = np.tile(np.linspace(0, 1, 32), (32, 1))                    # changes along x only
    across, down = hog_features(ramp).reshape(-1, 9), hog_features(ramp.T).reshape(-1, 9)
    assert not np.any((across > 0) & (down > 0))                      # no orientation in common
    assert hog_pearson(ramp, ramp.T) < 0


def test_identical_maps_give_one_on_every_measure():
    maps = np.random.default_rng(2).normal(size=(3, 24, 24))
    for values in map_similarities(maps, maps.copy()).values():
        assert np.allclose(values, 1.0)


# ----------------------------------------------------------------------------- schedule


def test_schedule_of_the_demo_pair_puts_nc_blocks_where_they_sit():
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.sanity.run import pair_schedule

    pair = load_model_pair(device="cpu")
    steps = pair_schedule(pair, "block")
    assert [s.name for s in steps] == ["fc", "layer3.2", "layer3.1", "layer3.0", "layer3.cn", "layer2.2", "layer2.1",
                                       "layer2.0", "layer2.cn", "layer1.2", "layer1.1", "layer1.0", "layer1.cn",
                                       "bn1", "conv1"]
    assert [s.name for s in steps if s.nc] == ["layer3.cn", "layer2.cn", "layer1.cn"]
    assert all(s.layers["baseline"] == () for s in steps if s.nc)
    assert steps[3].layers["nc"] == ("layer3.block.0.conv1", "layer3.block.0.bn1", "layer3.block.0.conv2",
                                     "layer3.block.0.bn2", "layer3.block.0.downsample.0", "layer3.block.0.downsample.1")
    assert steps[3].layers["baseline"] == tuple(n.replace(".block", "") for n in steps[3].layers["nc"])
    layers = pair_schedule(pair, "layer")
    assert layers[0].name == "fc" and layers[-1].name == "conv1"
    assert sum(len(s.layers["baseline"]) for s in layers) == sum(len(s.layers["baseline"]) for s in steps)


def test_randomiser_is_seeded_and_leaves_the_model_alone(tiny_net):
    from nc_viz.tasks.sanity.schedule import Randomiser, model_units

    assert [u.name for u in model_units(tiny_net, 16, "layer")] == ["fc", "layer4.1", "conv1"]
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    state = torch.random.get_rng_state()
    a, b = Randomiser(tiny_net, seed=3), Randomiser(tiny_net, seed=3)
    wa = a.apply(frozenset({"fc", "conv1"}))
    wb = b.apply(frozenset({"fc", "conv1"}))
    assert torch.equal(wa.fc.weight, wb.fc.weight) and not torch.equal(wa.fc.weight, tiny_net.fc.weight)
    assert torch.equal(wa.layer4[1].weight, tiny_net.layer4[1].weight)
    assert not torch.equal(Randomiser(tiny_net, seed=4).apply(frozenset({"fc"})).fc.weight, wa.fc.weight)
    a.apply(frozenset({"layer4.1"}))                                  # fc and conv1 back to their trained weights
    assert torch.equal(wa.fc.weight, tiny_net.fc.weight) and torch.equal(wa.conv1.weight, tiny_net.conv1.weight)
    assert torch.equal(torch.random.get_rng_state(), state)           # the caller's random stream is untouched
    assert all(torch.equal(v, before[k]) for k, v in tiny_net.state_dict().items())


# ----------------------------------------------------------------------------- the test itself


@pytest.fixture
def input_only_method():
    """A method whose map is the input's mean over channels: it cannot depend on the weights."""
    from nc_viz.cams.compute import CamOutput, resolve_target
    from nc_viz.cams.methods import CamMethod, register, unregister

    def compute(model, x, target):
        with torch.no_grad():
            logits = model(x)
        return CamOutput(logits=logits.float(), target=resolve_target(logits, target), cam=x.float().mean(dim=1))

    register(CamMethod("inputonly", "Input", "one forward pass", compute=compute))
    yield "inputonly"
    unregister("inputonly")


def _image_folder(tmp_path: Path, count: int = 3) -> Path:
    folder = tmp_path / "imgs"
    for i in range(count):
        save_image(folder / f"im{i}.png", seed=i, size=(40 + 4 * i, 36))
    return folder


def _samples(folder: Path):
    from nc_viz.datasets import read_annotated

    return read_annotated(folder).samples


def test_a_map_of_the_input_alone_stays_at_one(small_pair, tmp_path, input_only_method):
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.sanity import SanityOptions, sanity_dataset

    pair = load_model_pair(*small_pair, device="cpu")
    for mode in ("cascading", "independent"):
        result = sanity_dataset(pair, _samples(_image_folder(tmp_path)),
                                SanityOptions(method=input_only_method, mode=mode, workers=0))
        for role in ("baseline", "nc"):
            for measure, values in result.similarity[role].items():
                applicable = np.array([bool(s.layers[role]) or mode == "cascading" for s in result.steps])
                assert np.allclose(values[:, applicable], 1.0), (mode, role, measure)
                assert np.isnan(values[:, ~applicable]).all()


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_checkpoints_and_loaded_models_unchanged_and_same_seed_same_numbers(small_pair, tmp_path):
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.sanity import SanityOptions, sanity_dataset

    hashes = [_sha256(p) for p in small_pair]
    pair = load_model_pair(*small_pair, device="cpu")
    states = {role: {k: v.clone() for k, v in m.model.state_dict().items()} for role, m in pair.roles.items()}
    samples = _samples(_image_folder(tmp_path, 2))
    first = sanity_dataset(pair, samples, SanityOptions(seed=7, workers=0))
    again = sanity_dataset(pair, samples, SanityOptions(seed=7, workers=0, batch_size=1))
    other = sanity_dataset(pair, samples, SanityOptions(seed=8, workers=0))
    assert [_sha256(p) for p in small_pair] == hashes
    for role, m in pair.roles.items():
        assert all(torch.equal(v, states[role][k]) for k, v in m.model.state_dict().items()), role
    for role in ("baseline", "nc"):
        for measure in first.similarity[role]:
            np.testing.assert_allclose(first.similarity[role][measure], again.similarity[role][measure], atol=1e-5)
        assert not np.allclose(first.similarity[role]["spearman"], other.similarity[role]["spearman"])


def test_torchvision_pair_runs_with_nc_blocks_in_its_schedule(tmp_path):
    from nc_viz.core.constants import IMAGENET_MEAN, IMAGENET_STD
    from nc_viz.models import build_model
    from nc_viz.models.checkpoints import ModelMeta, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.sanity import SanityOptions, sanity_dataset

    paths = []
    for seed, arch in enumerate(("resnet18", "resnet18_nc")):
        torch.manual_seed(seed)
        model = build_model(arch, 10, input_size=64)
        meta = ModelMeta(arch=arch, num_classes=10, preprocess=Preprocess(64, IMAGENET_MEAN, IMAGENET_STD, crop_pct=1.0),
                         reduction=8 if arch.endswith("_nc") else None,
                         placement="stages" if arch.endswith("_nc") else None)
        paths.append(save_checkpoint(tmp_path / f"{arch}.pt", model, meta))
    pair = load_model_pair(*paths, device="cpu")
    result = sanity_dataset(pair, _samples(_image_folder(tmp_path, 1)), SanityOptions(workers=0))
    names = [s.name for s in result.steps]
    assert names[:3] == ["fc", "layer4.1", "layer4.0"] and names[-2:] == ["bn1", "conv1"]
    assert [s.name for s in result.steps if s.nc] == [n for n in names if n.endswith(".cn")] and \
        len([n for n in names if n.endswith(".cn")]) >= 3
    assert result.similarity["nc"]["ssim"].shape == (1, len(names))


def test_cli_on_the_demo_pair_cam_falls_once_the_classifier_is_random(tmp_path, capsys):
    from nc_viz.cli import main

    data = tmp_path / "data"
    assert main(["make-data", str(data), "--count", "6", "--seed", "3"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    code, stdout, stderr = run(["sanity", data, "--device", "cpu", "--workers", "0", "--bootstrap", "50",
                                "--report", out / "report", "--json", out / "s.json", "--save-maps", out / "maps",
                                "--figure-images", "2"], capsys)
    assert code == 0, stderr
    assert "Spearman (signed)" in stdout and "layer3.cn (NC block)" in stdout
    report = json.loads((out / "s.json").read_text())
    steps = report["steps"]
    assert steps[0]["name"] == "fc" and report["protocol"]["map_class"] == "label"
    for role in ("baseline", "nc"):   # CAM is sum_k w_k f_k: random classifier weights change it at once
        assert steps[0]["measures"]["spearman"][role] < 0.75
        assert steps[0]["measures"]["ssim"][role] < 0.8
        assert steps[-1]["measures"]["spearman_abs"][role] < 0.5
    rows = list(csv.DictReader((out / "report" / "records.csv").open()))
    assert len(rows) == 6 * len(steps) * 2
    for name in ("report.md", "similarity_curves.png", "similarity_curves.pdf", "maps.png"):
        assert (out / "report" / name).stat().st_size > 0
    assert (out / "report" / "similarity_curves.pdf").read_bytes().startswith(b"%PDF-")
    saved = sorted((out / "maps" / "nc").iterdir())
    assert len(saved) == len(steps) + 1 and saved[0].name == "00_original" and saved[1].name == "01_fc"
    one = np.load(next((out / "maps" / "nc" / "01_fc").rglob("*.npy")))
    assert one.shape == (64, 64) and one.dtype == np.float32


def test_cli_refuses_an_output_onto_a_checkpoint(small_pair, tmp_path, capsys):
    code, _, stderr = run(["sanity", _image_folder(tmp_path), *pair_args(small_pair), "--json", small_pair[0]],
                          capsys)
    assert code == 2 and "is also the baseline checkpoint" in stderr
