"""`ncviz evaluate` on annotated data: every layout gives the same numbers, the files say what was scored."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nc_viz.pair import load_model_pair
from nc_viz.cli import main
from nc_viz.datasets import read_annotated
from nc_viz.tasks.evaluate import EvalOptions, evaluate_dataset, nearest_like_cv2
from nc_viz.tasks.evaluate.records import read_records
from conftest import torchrun


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    """12 synthetic images at the demo pair's 64 px, with masks and boxes in every layout."""
    data = tmp_path_factory.mktemp("eval") / "heldout"
    assert main(["make-data", str(data), "--count", "12", "--seed", "5"]) == 0
    return data


@pytest.fixture(scope="module")
def demo_pair():
    return load_model_pair(device="cpu")


def _numbers(evaluation) -> dict:
    keep = ("accuracy", "max_box_acc", "max_box_acc_v2", "gt_known_loc", "top1_loc", "energy", "pointing_game",
            "instance_coverage_multi", "topk_corr", "published_corr")
    return {role: {k: evaluation.results[role].get(k) for k in keep} for role in ("baseline", "nc")}


def test_every_layout_of_the_same_images_gives_the_same_box_numbers(heldout, demo_pair):
    options = EvalOptions(bootstrap=20, workers=0)
    layouts = {"wsol": {}, "imagenet": {"images": heldout / "images"}, "cub": {"images": heldout / "images"}}
    reference = None
    for name, extra in layouts.items():
        root = {"wsol": heldout / "wsol", "imagenet": heldout / "xml", "cub": heldout / "cub"}[name]
        dataset = read_annotated(root, name, class_names=demo_pair.baseline.meta.class_names, **extra)
        assert len(dataset) == 12 and not dataset.problems, (name, dataset.problems)
        numbers = _numbers(evaluate_dataset(demo_pair, dataset, options))
        reference = reference or numbers
        assert numbers == reference, name
    masks = _numbers(evaluate_dataset(demo_pair, read_annotated(heldout, "ncviz"), options))
    for role in ("baseline", "nc"):  # the boxes come from the same masks; energy and pointing use the masks
        for key in ("accuracy", "max_box_acc", "max_box_acc_v2", "gt_known_loc", "topk_corr", "published_corr"):
            assert masks[role][key] == pytest.approx(reference[role][key]), (role, key)


def test_records_saved_maps_and_report_agree(heldout, tmp_path, capsys):
    report, maps = tmp_path / "report", tmp_path / "maps"
    code = main(["evaluate", str(heldout), "--report", str(report), "--save-maps", str(maps), "--bootstrap", "30",
                 "--workers", "0", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "MaxBoxAccV2" in out and "95% interval" in out
    payload = json.loads((report / "report.json").read_text())
    rows = read_records(report / "records.csv")
    assert len(rows) == 24 and {r["role"] for r in rows} == {"baseline", "nc"}
    for role in ("baseline", "nc"):
        mine = [r for r in rows if r["role"] == role]
        assert payload["results"][role]["accuracy"] == pytest.approx(np.mean([r["correct"] for r in mine]))
        assert payload["results"][role]["energy"] == pytest.approx(np.mean([r["energy"] for r in mine]))
        saved = sorted((maps / role).rglob("*.npy"))
        assert len(saved) == 12
        first = np.load(saved[0])
        assert first.shape == (64, 64) and first.dtype == np.float64 and first.min() == 0 and first.max() == 1
    from nc_viz.tasks.provenance import file_sha256

    models = payload["provenance"]["models"]
    assert models["nc"]["sha256"] == file_sha256(models["nc"]["path"])
    assert payload["intervals"]["max_box_acc_v2"]["n_resamples"] == 30
    for name in ("report.md", "boxacc_vs_threshold.png", "boxacc_vs_threshold.pdf", "differences.png",
                 "box_correctness.npz"):
        assert (report / name).stat().st_size > 0, name
    packed = np.load(report / "box_correctness.npz")
    assert packed["baseline_v2"].shape == (12, 3, 125) and len(packed["image_ids"]) == 12
    # the per-class breakdown: from the same records, averaging back to the data set's numbers
    classes = payload["per_class"]["classes"]
    assert sum(c["images"] for c in classes) == 12 and all(c.get("name") for c in classes)
    for role in ("baseline", "nc"):
        mine = [r for r in rows if r["role"] == role]
        for c in classes:
            pointing = [r["pointing"] for r in mine if r["label"] == c["label"]]
            assert c[role]["pointing_game"] == pytest.approx(np.mean(pointing))
        weighted = sum(c[role]["box_acc_v2"] * c["boxed_images"] for c in classes) / 12
        assert weighted == pytest.approx(payload["results"][role]["max_box_acc_v2"])
    text = (report / "report.md").read_text()
    assert "## Per class (localisation)" in text and "Published reference" not in text
    assert "\\begin{tabular}" in (report / "report.tex").read_text()


def test_annotation_problems_are_counted_and_strict_makes_them_fatal(heldout, tmp_path, capsys):
    import shutil

    bad = tmp_path / "wsol"
    shutil.copytree(heldout / "wsol", bad)
    lines = (bad / "localization.txt").read_text().splitlines()
    image, *_ = lines[0].split(",")
    lines.append(f"{image},10,10,10,20")          # no extent: a problem, not a crash
    (bad / "localization.txt").write_text("\n".join(lines) + "\n")
    args = ["evaluate", str(bad), "--format", "wsol", "--images", str(heldout), "--bootstrap", "5", "--workers", "0",
            "--limit", "2", "--device", "cpu"]
    assert main(args) == 0
    assert "1 annotation problems" in capsys.readouterr().err
    assert main([*args, "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "localization.txt" in err


def test_a_broken_image_is_skipped_and_counted(heldout, tmp_path, demo_pair):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(heldout, data)
    victim = sorted((data / "images").iterdir())[0]
    victim.write_bytes(b"not an image")
    evaluation = evaluate_dataset(demo_pair, read_annotated(data, "ncviz"), EvalOptions(bootstrap=5, workers=0))
    assert evaluation.images == 11 and len(evaluation.failed) == 1 and victim.name in evaluation.failed[0][0]


def test_masks_are_resized_like_opencvs_nearest():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for h, w, s in ((37, 53, 64), (300, 200, 224), (64, 64, 32)):
        mask = rng.integers(0, 2, (h, w)).astype(np.uint8)
        assert np.array_equal(nearest_like_cv2(mask, s), cv2.resize(mask, (s, s), interpolation=cv2.INTER_NEAREST))


def _cam_by_hand(model: torch.nn.Module, x: torch.Tensor, cls: int) -> np.ndarray:
    """CAM (Zhou et al. 2016) of one image: sum_k w_k^c f_k over the features the average pool
    receives, as the reference's score map (bicubic to S, min-max)."""
    from nc_viz.metrics.wsol import reference_scoremap

    seen = []
    handle = model.avgpool.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(x[None])
    finally:
        handle.remove()
    cam = torch.einsum("k,khw->hw", model.fc.weight[cls].detach().double(), seen[0][0].double())
    return reference_scoremap(cam.numpy(), x.shape[-1])


def test_predicted_class_maps_differ_from_true_class_maps_only_where_the_model_is_wrong(heldout, demo_pair,
                                                                                        tmp_path):
    """Three images relabelled so that the models are wrong on them: there `--map-class predicted`
    explains the predicted class and `true` the label, each map that class's CAM computed by hand;
    where a model is right, both runs save the same map and the same per-image numbers."""
    import shutil
    from dataclasses import replace

    from nc_viz.tasks.evaluate import EvalImages

    meta = tmp_path / "wsol"
    shutil.copytree(heldout / "wsol", meta)
    lines = (meta / "class_labels.txt").read_text().splitlines()
    for i in range(3):
        image, label = lines[i].split(",")
        lines[i] = f"{image},{(int(label) + 1) % 9}"
    (meta / "class_labels.txt").write_text("\n".join(lines) + "\n")
    dataset = read_annotated(meta, "wsol", images=heldout)
    runs = {}
    for map_class in ("true", "predicted"):
        maps, records = tmp_path / f"maps-{map_class}", tmp_path / f"{map_class}.csv"
        evaluate_dataset(demo_pair, dataset, EvalOptions(bootstrap=0, workers=0, map_class=map_class),
                         records_path=records, save_maps=maps)
        runs[map_class] = (maps, {(r["role"], r["image_id"]): r for r in read_records(records)})
    items = EvalImages(dataset.samples, range(len(dataset)), replace(demo_pair.preprocess, center_crop=False))
    wrong = {"baseline": 0, "nc": 0}
    for role, loaded in demo_pair.roles.items():
        for i, sample in enumerate(dataset.samples):
            row = runs["true"][1][role, sample.image_id]
            saved = {c: np.load(runs[c][0] / role / f"{sample.image_id}.npy") for c in runs}
            other = runs["predicted"][1][role, sample.image_id]
            if row["correct"]:
                assert np.array_equal(saved["true"], saved["predicted"]), (role, sample.image_id)
                assert {k: row[k] for k in ("iou_tau_0.2", "energy", "pointing")} == \
                       {k: other[k] for k in ("iou_tau_0.2", "energy", "pointing")}
                continue
            wrong[role] += 1
            for map_class, cls in (("true", sample.label), ("predicted", row["predicted"])):
                expected = _cam_by_hand(loaded.model, items[i].x, int(cls))
                assert np.allclose(saved[map_class], expected, atol=1e-5), (role, sample.image_id, map_class)
            assert not np.allclose(saved["true"], saved["predicted"], atol=1e-3)
    assert wrong["baseline"] >= 3 and wrong["nc"] >= 3 and wrong["baseline"] < len(dataset)
    with pytest.raises(Exception, match="^map_class both: choose from"):
        evaluate_dataset(demo_pair, dataset, EvalOptions(map_class="both"))


@pytest.mark.serial  # two ranks of its own
def test_torchrun_two_processes_equal_one_process(heldout, tmp_path, capsys):
    """Shards merge exactly: counts, histograms, records in image order, outcomes, failures, and
    every interval (PxAP's included)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(heldout, data)
    sorted((data / "images").iterdir())[3].write_bytes(b"not an image")  # a failure on rank 1's shard
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    # batch size 1: a shard batches other neighbours together, which may move a map by float rounding
    args = ["evaluate", str(data), "--bootstrap", "40", "--workers", "0", "--batch-size", "1", "--device", "cpu"]
    code = main([*args, "--report", str(single)])
    single_out = capsys.readouterr().out
    proc = torchrun([*args, "--report", sharded], timeout=180)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert proc.stdout.count("| metric |") == 1 and proc.stdout == single_out  # rank 0 alone prints the table
    assert (sharded / "records.csv").read_bytes() == (single / "records.csv").read_bytes()
    one, two = (json.loads((d / "report.json").read_text()) for d in (single, sharded))
    assert one.pop("provenance") and two.pop("provenance")
    assert Path(one.pop("records")).parent.name == "single" and Path(two.pop("records")).parent.name == "sharded"
    assert two == one and len(one["failed"]) == 1 and one["images"] == 11
    # PxAP's interval: the ranks' histogram files, read back block by block, give the same resamples
    assert one["intervals"]["pxap"]["n_images"] == 11 and one["intervals"]["pxap"]["n_resamples"] == 40
    assert one["intervals"]["pxap"]["base"] == one["results"]["baseline"]["pxap"]
    packed_one, packed_two = np.load(single / "box_correctness.npz"), np.load(sharded / "box_correctness.npz")
    assert sorted(packed_one) == sorted(packed_two)
    for key in packed_one:
        assert np.array_equal(packed_one[key], packed_two[key]), key
    assert not list(sharded.glob("*.part*")) and not list(sharded.glob(".*"))


def test_scoring_beside_the_forward_passes_equals_scoring_inline(heldout, demo_pair, tmp_path):
    """The scoring thread keeps the order of the chunks, and images measured in several threads
    are tallied in order: same records, same numbers and intervals (boxes and masks)."""
    dataset = read_annotated(heldout, "ncviz")
    runs = {}
    for threads in (0, 1, 3):
        options = EvalOptions(bootstrap=10, workers=0, batch_size=2, score_threads=threads)
        maps = tmp_path / f"maps{threads}"
        evaluation = evaluate_dataset(demo_pair, dataset, options, records_path=tmp_path / f"{threads}.csv",
                                      save_maps=maps)
        saved = {path.relative_to(maps).as_posix(): path.read_bytes() for path in sorted(maps.rglob("*.npy"))}
        assert len(saved) == 2 * evaluation.images
        runs[threads] = (_numbers(evaluation), (tmp_path / f"{threads}.csv").read_bytes(), evaluation.boxed_ids, saved,
                         {role: repr(evaluation.results[role]["pxap"]) for role in ("baseline", "nc")},
                         {name: repr((i.diff, i.low, i.high)) for name, i in evaluation.intervals.items()},
                         {role: {k: v.tobytes() for k, v in packed.items()}
                          for role, packed in evaluation.correctness.items()})
    assert runs[0][4]["nc"] != "nan" and "pxap" in runs[0][5]
    assert runs[0] == runs[1] == runs[3]
