"""PxAP's paired bootstrap over images: resampled histograms, exact merges, coverage, evaluate."""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nc_viz.tasks.evaluate.outcomes import BLOCK_IMAGES, HistogramWriter, histogram_chunks, histogram_positions
from nc_viz.metrics import bootstrap
from nc_viz.metrics.bootstrap import (interval_from_resamples, paired_bootstrap_max_over_tau, resample_counts,
                                      resampled_sums)
from nc_viz.metrics.wsol import MASK_BINS, MaskAccumulator, mask_histograms, pxap_of


def _images(rng: np.random.Generator, n: int, size: int = 12) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n small images: a score map, a foreground mask and an ignore region each."""
    out = []
    for _ in range(n):
        mask = np.zeros((size, size), bool)
        y, x = rng.integers(0, size - 4, 2)
        mask[y:y + 4, x:x + rng.integers(2, 5)] = True
        scores = np.clip(rng.random((size, size)) * 0.6 + 0.4 * mask * rng.random(), 0, 1)
        ignore = np.zeros_like(mask)
        ignore[rng.integers(0, size), :] = True
        out.append((scores, mask, ignore))
    return out


def _histograms(images) -> np.ndarray:
    return np.stack([np.stack(mask_histograms(*image)) for image in images])   # (N, 2, MASK_BINS)


def test_mask_histograms_are_what_the_accumulator_adds():
    (scores, mask, ignore), = _images(np.random.default_rng(0), 1)
    acc = MaskAccumulator()
    true_hist, false_hist = acc.add(scores, mask, ignore)
    assert true_hist.shape == (MASK_BINS,) and true_hist.dtype == np.int64
    assert np.array_equal(acc.true_hist, true_hist) and np.array_equal(acc.false_hist, false_hist)
    assert true_hist.sum() == mask.sum() and false_hist.sum() == (~mask & ~ignore).sum()
    assert pxap_of(acc.true_hist, acc.false_hist) == acc.result()["pxap"]


def test_pxap_of_is_the_accumulators_pxap_row_by_row():
    hists = _histograms(_images(np.random.default_rng(1), 5))
    values = pxap_of(hists[:, 0], hists[:, 1])
    assert values.shape == (5,)
    for h, value in zip(hists, values):
        acc = MaskAccumulator()
        acc.true_hist, acc.false_hist = h[0].astype(float), h[1].astype(float)
        assert value == acc.result()["pxap"]
    assert math.isnan(float(pxap_of(np.zeros(MASK_BINS), np.ones(MASK_BINS))))   # no positive pixel
    with pytest.raises(ValueError, match="histograms"):
        pxap_of(np.zeros(10), np.zeros(10))


def test_a_resample_gives_the_pxap_of_its_images_computed_directly():
    """Row b of the resampled sums is the histogram of the images drawn in resample b (each as
    often as drawn): its PxAP equals the accumulator's on exactly those images."""
    images = _images(np.random.default_rng(2), 9)
    hists = _histograms(images)
    counts = resample_counts(9, 30, seed=7)
    drawn = np.random.default_rng(7).integers(0, 9, size=(30, 9))      # the same draws, as indices
    sums = resampled_sums([(np.arange(9), hists)], counts)
    resampled = pxap_of(sums[:, 0], sums[:, 1])
    for b in (0, 13, 29):
        direct = MaskAccumulator()
        for i in drawn[b]:
            direct.add(*images[i])
        assert resampled[b] == direct.result()["pxap"]


def test_resampled_sums_do_not_depend_on_order_or_chunking():
    hists = _histograms(_images(np.random.default_rng(3), 23))
    counts = resample_counts(23, 40, seed=1)
    whole = resampled_sums([(np.arange(23), hists)], counts)
    order = np.random.default_rng(0).permutation(23)
    chunks = [(order[i:i + 5], hists[order[i:i + 5]]) for i in range(0, 23, 5)]
    assert np.array_equal(resampled_sums(reversed(chunks), counts), whole)
    assert np.array_equal(whole.sum(axis=0), (counts.sum(axis=0)[:, None, None] * hists).sum(axis=0))
    with pytest.raises(ValueError, match="no image"):
        resampled_sums([], counts)


def test_histogram_files_of_any_sharding_give_the_same_chunks(tmp_path):
    """One file or two interleaved shards (as torchrun ranks write them), blocks of BLOCK_IMAGES:
    the same positions, and resampled sums equal to the last bit."""
    n = BLOCK_IMAGES + 40
    rng = np.random.default_rng(4)
    hists = rng.integers(0, 70_000, size=(n, 2, MASK_BINS))         # above uint16
    hists[:, :, rng.random(MASK_BINS) < 0.3] = 0
    positions = np.arange(n) * 3 + 1                                   # failed images leave gaps
    layouts = {"one": [np.arange(n)], "two": [np.arange(0, n, 2), np.arange(1, n, 2)]}
    counts = resample_counts(n, 25, seed=2)
    results = {}
    for name, shards in layouts.items():
        paths = []
        for r, rows in enumerate(shards):
            paths.append(tmp_path / f"{name}{r}.histograms")
            with HistogramWriter(paths[-1]) as writer:
                for i in rows:
                    writer.add(positions[i], hists[i, 0], hists[i, 1])
        assert np.array_equal(histogram_positions(paths), positions)
        seen = np.zeros(n, bool)
        for columns, block in histogram_chunks(paths, positions):
            assert np.array_equal(block, hists[columns]) and len(block) <= BLOCK_IMAGES
            seen[columns] = True
        assert seen.all()
        results[name] = resampled_sums(histogram_chunks(paths, positions), counts)
    assert np.array_equal(results["one"], results["two"])
    with pytest.raises(ValueError, match="not among"):
        list(histogram_chunks([tmp_path / "one0.histograms"], positions[:-5]))
    with pytest.raises(ValueError, match="histograms"), HistogramWriter(tmp_path / "bad") as writer:
        writer.add(0, -np.ones(MASK_BINS), np.zeros(MASK_BINS))


def _simulated_histograms(rng: np.random.Generator, images: int, shift: float) -> np.ndarray:
    """Paired per-image histograms `(2 models, images, 2, MASK_BINS)`: both models see the same
    images (foreground size, an image-level offset of the map); NC separates by `shift` more."""
    fg = rng.integers(20, 80, images)
    bg = 200 - fg
    offset = rng.normal(0.0, 0.8, images)
    out = np.zeros((2, images, 2, MASK_BINS), dtype=np.int64)
    for m, gain in enumerate((1.0, 1.0 + shift)):
        for kind, (sizes, centre) in enumerate(((fg, gain), (bg, -gain))):
            owner = np.repeat(np.arange(images), sizes)
            logits = centre + offset[owner] + rng.normal(0.0, 1.5, owner.size)
            bins = np.minimum((1000 / (1 + np.exp(-logits))).astype(int), 999)
            np.add.at(out[m, :, kind], (owner, bins), 1)
    return out


@pytest.mark.serial  # it times itself
def test_pxap_interval_covers_the_true_difference_at_about_the_nominal_rate():
    """Simulated paired data sets of 120 images; the true difference is the PxAP difference on a
    very large sample of the same population. The 95% interval covers it in 88-99% of 200 runs
    (about 95% over 500 runs with 400 resamples)."""
    rng = np.random.default_rng(11)
    population = _simulated_histograms(rng, 40_000, 0.25).sum(axis=1)    # (2, 2, MASK_BINS)
    true_pxap = pxap_of(population[:, 0], population[:, 1])
    truth = float(true_pxap[1] - true_pxap[0])
    start = time.perf_counter()
    covered = 0
    for sim in range(200):
        hists = _simulated_histograms(rng, 120, 0.25)
        counts = resample_counts(120, 200, seed=sim)
        total = hists.sum(axis=1)
        base, nc = (float(v) for v in pxap_of(total[:, 0], total[:, 1]))
        stats = [pxap_of(s[:, 0], s[:, 1]) for s in (resampled_sums([(np.arange(120), h)], counts) for h in hists)]
        interval = interval_from_resamples(base, nc, stats[0], stats[1], 120)
        covered += interval.low <= truth <= interval.high
    assert truth > 1.0
    assert 0.88 <= covered / 200 <= 0.99, covered
    assert time.perf_counter() - start < 30.0


def test_interval_from_resamples_leaves_out_undefined_resamples():
    iv = interval_from_resamples(50.0, 60.0, np.array([50.0, np.nan, 40.0, 55.0]), np.array([60.0, 1.0, 52.0, 64.0]), 7)
    assert iv.n_resamples == 3 and iv.n_images == 7 and iv.diff == 10.0 and iv.low >= 9.0 and iv.high <= 12.0
    assert math.isnan(interval_from_resamples(math.nan, 1.0, np.ones(3), np.ones(3), 7).diff)


@pytest.mark.parametrize("shape", [(37, 20), (37, 3, 20)])
def test_packed_outcomes_read_in_chunks_give_the_same_interval(shape, monkeypatch):
    """Outcomes bit-packed and unpacked a few images at a time: the same interval, to the bit."""
    rng = np.random.default_rng(5)
    base, nc = rng.random(shape) < 0.5, rng.random(shape) < 0.6
    whole = paired_bootstrap_max_over_tau(base, nc, n=50, seed=3)
    monkeypatch.setattr(bootstrap, "_BLOCK_BYTES", 4 * 20 * shape[1] * 4)   # chunks of 4 images (or fewer)
    packed = paired_bootstrap_max_over_tau(np.packbits(base, axis=-1), np.packbits(nc, axis=-1), n=50, seed=3,
                                           packed_count=20)
    assert packed == whole
    with pytest.raises(ValueError, match="packed"):
        paired_bootstrap_max_over_tau(base, nc, n=5, packed_count=20)


# ----------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    from nc_viz.cli import main

    data = tmp_path_factory.mktemp("pxap") / "heldout"
    assert main(["make-data", str(data), "--count", "10", "--seed", "8"]) == 0
    return data


def test_evaluate_pxap_interval_around_the_reference_pxap(heldout, tmp_path, capsys):
    """The interval's estimate is the PxAP of all images (the reference's, recomputed here from
    the saved maps and the masks at S); it shows in the table, report.json and report.md."""
    from nc_viz.pair import load_model_pair
    from nc_viz.cli import main
    from nc_viz.datasets import read_annotated
    from nc_viz.tasks.evaluate import EvalImages

    report, maps = tmp_path / "report", tmp_path / "maps"
    assert main(["evaluate", str(heldout), "--report", str(report), "--save-maps", str(maps), "--bootstrap", "50",
                 "--workers", "0", "--device", "cpu"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| PxAP")]
    payload = json.loads((report / "report.json").read_text())
    interval = payload["intervals"]["pxap"]
    assert interval["n_images"] == 10 and interval["n_resamples"] == 50
    pair = load_model_pair(device="cpu")
    dataset = read_annotated(heldout, "ncviz")
    items = EvalImages(dataset.samples, range(10), replace(pair.preprocess, center_crop=False))
    for role, key in (("baseline", "base"), ("nc", "nc")):
        direct = MaskAccumulator()
        for i, sample in enumerate(dataset.samples):
            item = items[i]
            direct.add(np.load(maps / role / f"{sample.image_id}.npy"), item.regions, item.ignore)
        assert payload["results"][role]["pxap"] == interval[key] == pytest.approx(direct.result()["pxap"], abs=1e-9)
    assert interval["low"] <= interval["diff"] <= interval["high"]
    assert len(table) == 1 and f"[{interval['low']:.1f}, {interval['high']:.1f}]" in table[0]
    assert "PxAP is recomputed inside every resample" in (report / "report.md").read_text()


def test_bootstrap_0_turns_every_interval_off_and_keeps_the_numbers(heldout, tmp_path, capsys):
    from nc_viz.cli import main

    runs = {}
    for n in (0, 20):
        assert main(["evaluate", str(heldout), "--report", str(tmp_path / str(n)), "--bootstrap", str(n),
                     "--workers", "0", "--device", "cpu"]) == 0
        runs[n] = (capsys.readouterr().out, json.loads((tmp_path / str(n) / "report.json").read_text()))
    out, payload = runs[0]
    assert payload["intervals"] == {} and "(--bootstrap 0)" in out and "[" not in out
    assert payload["results"] == runs[20][1]["results"] and "pxap" in runs[20][1]["intervals"]
    assert not (tmp_path / "0" / "differences.png").exists() and (tmp_path / "20" / "differences.png").exists()
    assert "Intervals: off" in (tmp_path / "0" / "report.md").read_text()
    assert main(["evaluate", str(heldout), "--bootstrap", "-1", "--device", "cpu"]) == 2
