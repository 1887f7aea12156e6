"""`ncviz neurons` (Fig. 3): top-k neuron maps of both models, from the CAM's own forward pass."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.cli import main
from nc_viz.core.errors import UsageError
from nc_viz.core.roles import ROLES
from nc_viz.figures.style import MapStyle
from nc_viz.pair import PairSpec
from conftest import assert_vector_file, run

CHANNELS = 64  # resnet20's last layer


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("neuron_images")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(3):
        path = d / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def neurons_cli(small_pair, images, out_dir: Path, *extra) -> tuple[Path, Path, Path]:
    """Run `ncviz neurons` with maps and JSON; return (figure, maps, json) paths."""
    base, nc = small_pair
    fig, maps, sidecar = out_dir / "fig.png", out_dir / "maps.npz", out_dir / "n.json"
    code = main([str(a) for a in ["neurons", *images, "--baseline", base, "--nc", nc, "-o", fig,
                                  "--save-maps", maps, "--json", sidecar, "--device", "cpu", *extra]])
    assert code == 0
    return fig, maps, sidecar


@pytest.fixture(scope="module")
def top8(small_pair, images, tmp_path_factory) -> tuple[Path, Path, Path]:
    return neurons_cli(small_pair, images, tmp_path_factory.mktemp("top8"), "--top", "8")


def hooked_features(checkpoint: Path, x: np.ndarray) -> tuple[torch.Tensor, torch.nn.Module]:
    """The input of the average pool of a freshly loaded model on `x`, by a hook of our own."""
    from nc_viz.models.checkpoints import load_checkpoint

    model = load_checkpoint(checkpoint, device="cpu").model
    seen = []
    handle = model.avgpool.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        model(torch.from_numpy(x))
    handle.remove()
    return seen[0], model


# ----------------------------------------------------------------------------- the files


def test_maps_file_holds_compare_arrays_and_neuron_arrays(top8):
    _, maps, _ = top8
    data = np.load(maps)
    assert data["input"].shape == (3, 3, 32, 32) and data["baseline_cam"].shape == (3, 8, 8)
    for side in ("baseline", "nc"):
        assert data[f"{side}_neurons"].shape == (3, 8, 8, 8) and data[f"{side}_neurons"].dtype == np.float32
        assert data[f"{side}_neuron_ids"].shape == (3, 8) and data[f"{side}_neuron_ids"].dtype == np.int64
        assert data[f"{side}_contrib"].shape == (3, 8)
        assert (np.diff(data[f"{side}_contrib"], axis=1) <= 0).all()  # best first


@pytest.mark.parametrize("side,index", [("baseline", 0), ("nc", 1)])
def test_ids_match_a_ranking_by_hand(small_pair, top8, side, index):
    data = np.load(top8[1])
    feats, model = hooked_features(small_pair[index], data["input"])
    classes = data[f"{side}_class"]
    w = model.fc.weight.detach()[torch.from_numpy(classes)]                  # (N, C)
    r = (w * feats.mean((2, 3))).numpy()
    for i in range(len(classes)):
        by_hand = sorted(range(CHANNELS), key=lambda k: -r[i, k])[:8]
        assert data[f"{side}_neuron_ids"][i].tolist() == by_hand
        np.testing.assert_allclose(data[f"{side}_contrib"][i], r[i, by_hand], rtol=1e-5, atol=1e-6)
        expected = w[i, by_hand, None, None] * feats[i, by_hand]
        np.testing.assert_allclose(data[f"{side}_neurons"][i], expected.numpy(), rtol=1e-5, atol=1e-5)


def test_rank_by_activation_ranks_by_mean_activation(small_pair, images, tmp_path):
    _, maps, sidecar = neurons_cli(small_pair, images[:2], tmp_path, "--top", "5", "--rank-by", "activation")
    data = np.load(maps)
    report = json.loads(sidecar.read_text())
    assert report["rank_by"] == "activation"
    for index, side in enumerate(("baseline", "nc")):
        feats, _ = hooked_features(small_pair[index], data["input"])
        mean_f = feats.mean((2, 3)).numpy()
        for i in range(2):
            by_hand = sorted(range(CHANNELS), key=lambda k: -mean_f[i, k])[:5]
            assert data[f"{side}_neuron_ids"][i].tolist() == by_hand
            np.testing.assert_allclose(report["images"][i][side]["activations"], mean_f[i, by_hand], rtol=1e-4)


def test_all_channels_sum_to_the_cam(small_pair, images, tmp_path):
    _, maps, _ = neurons_cli(small_pair, images[:2], tmp_path, "--top", str(CHANNELS), "--panel-size", "32")
    data = np.load(maps)
    for side in ("baseline", "nc"):
        assert sorted(data[f"{side}_neuron_ids"][0].tolist()) == list(range(CHANNELS))
        np.testing.assert_allclose(data[f"{side}_neurons"].sum(1), data[f"{side}_cam"], rtol=1e-4, atol=1e-4)


def _pairs_mean(matrix: np.ndarray) -> float:
    i, j = np.triu_indices(len(matrix), k=1)
    return float(matrix[i, j].mean())


def _correlation_by_hand(maps: np.ndarray) -> float:
    """Mean Pearson correlation over pairs of flattened maps; a constant map correlates 0."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    centred = flat - flat.mean(1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    unit = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 1e-9 * np.abs(flat).max())
    return _pairs_mean(unit @ unit.T)


def _iou_by_hand(maps: np.ndarray, top_q: float) -> float:
    """Mean IoU over pairs of each map's round(top_q * h * w) largest positions (ties: earlier first)."""
    flat = maps.reshape(len(maps), -1)
    size = max(1, round(top_q * flat.shape[1]))
    regions = [set(np.argsort(-row, kind="stable")[:size].tolist()) for row in flat]
    iou = np.array([[len(a & b) / len(a | b) for b in regions] for a in regions])
    return _pairs_mean(iou)


def test_json_sidecar_fields(small_pair, top8):
    """Every number of the sidecar against the same quantity by hand from our own hook (README "The maths, briefly")."""
    _, maps, sidecar = top8
    data, report = np.load(maps), json.loads(sidecar.read_text())
    assert report["schema"] == "ncviz.neurons/1"
    assert report["top_k"] == 8 and report["rank_by"] == "contribution"
    assert report["diversity"]["top_q"] == 0.2
    assert [Path(img["path"]).name for img in report["images"]] == ["img0.png", "img1.png", "img2.png"]
    names = ("circle", "square", "triangle", "star", "cross")
    for index, side in enumerate(("baseline", "nc")):
        feats, model = hooked_features(small_pair[index], data["input"])
        f = feats.numpy()                                                    # (N, C, h, w), f >= 0
        weight, bias = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
        mean_f = f.mean((2, 3))
        logits = mean_f.astype(np.float64) @ weight.T.astype(np.float64) + bias   # GAP then fc
        for i, image in enumerate(report["images"]):
            m = image[side]
            assert set(m) == {"class", "class_name", "probability", "logit", "logit_minus_bias", "neuron_ids",
                              "contributions", "shares", "activations", "top_k_share", "diversity"}
            c = int(logits[i].argmax())
            assert m["class"] == c and m["class_name"] == names[c]
            prob = np.exp(logits[i] - logits[i].max()) / np.exp(logits[i] - logits[i].max()).sum()
            assert m["probability"] == pytest.approx(prob[c], rel=1e-4)
            assert m["logit"] == pytest.approx(logits[i, c], rel=1e-4, abs=1e-5)
            assert m["logit_minus_bias"] == pytest.approx(logits[i, c] - bias[c], rel=1e-4, abs=1e-5)
            r = weight[c].astype(np.float64) * mean_f[i]                     # r_k = w_k^c mean f_k
            ids = sorted(range(CHANNELS), key=lambda k: -r[k])[:8]
            assert m["neuron_ids"] == ids
            np.testing.assert_allclose(m["contributions"], r[ids], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(m["shares"], r[ids] / r.sum(), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(m["activations"], mean_f[i, ids], rtol=1e-4, atol=1e-6)
            assert m["top_k_share"] == pytest.approx(r[ids].sum() / r.sum(), rel=1e-4)
            magnitude = np.abs(weight[c, ids])[:, None, None] * f[i, ids]   # |w_k^c| f_k, float32
            assert m["diversity"]["correlation"] == pytest.approx(_correlation_by_hand(magnitude), abs=1e-5)
            assert m["diversity"]["iou"] == pytest.approx(_iou_by_hand(magnitude, 0.2), abs=1e-5)


def test_one_neuron_has_no_diversity(small_pair, images, tmp_path):
    _, _, sidecar = neurons_cli(small_pair, images[:1], tmp_path, "--top", "1")
    model = json.loads(sidecar.read_text())["images"][0]["baseline"]
    assert len(model["neuron_ids"]) == 1
    assert model["diversity"] == {"correlation": None, "iou": None}


def test_output_bytes_are_reproducible(small_pair, images, top8, tmp_path):
    again = neurons_cli(small_pair, images, tmp_path, "--top", "8")
    for first, second in zip(top8, again):
        assert first.read_bytes() == second.read_bytes(), first.name


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_vector_formats(small_pair, images, tmp_path, capsys, fmt):
    base, nc = small_pair
    out = tmp_path / f"fig.{fmt}"
    code, _, err = run(["neurons", images[0], "--baseline", base, "--nc", nc, "-o", out, "--top", "3"], capsys)
    assert code == 0, err
    data = out.read_bytes()
    assert_vector_file(data, fmt)  # each format its own signature: a PDF header and trailer, an SVG root element


# ----------------------------------------------------------------------------- one forward pass


@pytest.mark.parametrize("batch_size,passes", [(16, 1), (2, 2)])
def test_every_map_comes_from_one_forward_pass_per_batch(small_pair, images, tmp_path, monkeypatch,
                                                         batch_size, passes):
    import nc_viz.tasks.figures as workflows

    calls = {"baseline": 0, "nc": 0}
    real_load = workflows.load_model_pair

    def counting_load(*args, **kwargs):
        pair = real_load(*args, **kwargs)
        for side in calls:
            pair.roles[side].model.register_forward_hook(
                lambda *_args, side=side: calls.__setitem__(side, calls[side] + 1))
        return pair

    monkeypatch.setattr(workflows, "load_model_pair", counting_load)
    base, nc = small_pair
    workflows.run_neurons(images, tmp_path / "fig.png", top_k=CHANNELS, batch_size=batch_size,
                          style=MapStyle(panel_size=32),
                          save_maps=tmp_path / "m.npz", json_path=tmp_path / "n.json",
                          pair_spec=PairSpec(base, nc, device="cpu"))
    assert calls == {"baseline": passes, "nc": passes}  # 3 images, 64 neurons each: no pass per neuron


# ----------------------------------------------------------------------------- the figure


@pytest.fixture(scope="module")
def pair_result(small_pair, images):
    from nc_viz.pair import load_model_pair
    from nc_viz.models.inputs import load_batch

    pair = load_model_pair(*small_pair, device="cpu")
    return pair, pair.run(load_batch(images[:2], pair.preprocess), top_k=5)


def test_figure_has_two_model_rows_per_image(pair_result):
    from nc_viz.figures.build import neurons_figure
    from nc_viz.figures.build import neuron_diversity

    pair, result = pair_result
    fig = neurons_figure(result, pair.class_name, titles=("Input", "Base", "NC"), names=["a.png", "b.png"],
                         diversity=neuron_diversity(result))
    assert len(fig.rows) == 2 * 2
    assert [r.label for r in fig.rows] == ["Base", "NC", "Base", "NC"]
    assert all(len(r.panels) == 5 + 1 for r in fig.rows)
    assert list(fig.column_titles) == ["Input", "Top-1", "Top-2", "Top-3", "Top-4", "Top-5"]
    assert [r.panels[0].title for r in fig.rows] == ["a.png", "", "b.png", ""]
    for r, row in enumerate(fig.rows):
        np.testing.assert_array_equal(row.panels[0].image, result.pictures[r // 2])  # the input, both rows
        assert "mean pairwise corr" in row.note and "mean pairwise IoU" in row.note
    first = result.roles["baseline"].out.neuron_ids[0, 0]
    assert fig.rows[0].panels[1].title.startswith(f"#{int(first)} · ")
    assert fig.rows[0].panels[1].title.endswith("%")


def test_figure_can_show_fewer_neurons_than_computed(pair_result):
    from nc_viz.figures.build import neurons_figure

    pair, result = pair_result
    fig = neurons_figure(result, pair.class_name, top_k=2)
    assert all(len(r.panels) == 3 for r in fig.rows) and not any("corr" in r.note for r in fig.rows)


def test_shares_are_contributions_over_logit_minus_bias(pair_result):
    from nc_viz.figures.build import neuron_shares

    pair, result = pair_result
    out = result.roles["baseline"].out
    bias = pair.baseline.model.fc.bias.detach()[out.target]
    logit = out.logits.gather(1, out.target[:, None])[:, 0]
    torch.testing.assert_close(neuron_shares(out) * (logit - bias)[:, None], out.neuron_scores, rtol=1e-4, atol=1e-5)


def test_shared_scale_puts_both_rows_of_an_image_on_one_scale(small_pair, images):
    from nc_viz.pair import load_model_pair
    from nc_viz.models.inputs import load_batch

    pair = load_model_pair(*small_pair, device="cpu")
    result = pair.run(load_batch(images[:2], pair.preprocess), top_k=4, scale="shared")
    both = torch.stack([result.roles[r].neuron_heat for r in ROLES], dim=1).flatten(1)
    torch.testing.assert_close(both.amin(1), torch.zeros(2))
    torch.testing.assert_close(both.amax(1), torch.ones(2))
    per_panel_max = result.roles["baseline"].neuron_heat.flatten(2).amax(2)
    assert (per_panel_max < 1 - 1e-6).any()  # not every panel stretched to its own range


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("top", ["0", "65", "-3"])
def test_top_out_of_range_is_a_usage_error(small_pair, images, tmp_path, capsys, top):
    base, nc = small_pair
    out = tmp_path / "fig.png"
    code, _, err = run(["neurons", images[0], "--baseline", base, "--nc", nc, "-o", out, "--top", top], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and "'--top'" in err and "1<=x<=64" in err
    assert not out.exists()


def test_top_above_the_channel_count_is_a_usage_error(small_pair):
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.figures import check_top_k

    pair = load_model_pair(*small_pair, device="cpu")
    check_top_k(pair, CHANNELS)
    pair.roles["nc"].model.fc = torch.nn.Linear(16, 5)  # pretend a narrower last layer
    with pytest.raises(UsageError, match="^top_k 20 is out of range: .* has 16 channels"):
        check_top_k(pair, 20)


def test_method_other_than_cam_is_a_usage_error(small_pair, images, tmp_path, capsys):
    base, nc = small_pair
    code, _, err = run(["neurons", images[0], "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png",
                        "--method", "gradcam"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "--method cam" in err


def test_bad_titles_are_a_usage_error(small_pair, images, tmp_path, capsys):
    base, nc = small_pair
    code, _, err = run(["neurons", images[0], "--baseline", base, "--nc", nc, "-o", tmp_path / "f.png",
                        "--titles", "a,b"], capsys)
    assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "--titles" in err and "three comma-separated titles" in err, err
    assert not (tmp_path / "f.png").exists()


def test_help_does_not_import_torch():
    code = ("import sys\nfrom nc_viz.cli import main\nrc = main(['neurons', '--help'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--top" in proc.stdout and "--rank-by" in proc.stdout and "--json" in proc.stdout
