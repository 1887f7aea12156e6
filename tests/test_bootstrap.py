"""Paired bootstrap intervals: coverage, the re-chosen best threshold, NaN handling, seeds."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from nc_viz.metrics.bootstrap import (Interval, paired_bootstrap_max_over_tau, paired_bootstrap_mean,
                                      resample_counts)


@pytest.mark.serial  # it times itself
def test_interval_covers_the_true_difference_at_about_the_nominal_rate():
    """200 simulated paired data sets with a known mean difference (0.1) and a per-image
    correlation of the two models: the 95% interval must cover 0.1 in 90-99% of them."""
    rng = np.random.default_rng(123)
    start = time.perf_counter()
    covered = 0
    for sim in range(200):
        shared = rng.normal(0.0, 1.0, 150)                 # what both models find hard
        base = shared + rng.normal(0.0, 0.5, 150)
        nc = shared + 0.1 + rng.normal(0.0, 0.5, 150)
        iv = paired_bootstrap_mean(base, nc, n=500, seed=sim)
        covered += iv.low <= 0.1 <= iv.high
    assert 0.90 <= covered / 200 <= 0.99
    assert time.perf_counter() - start < 10.0


def test_pairing_narrows_the_interval_below_an_unpaired_one():
    """Correlated models: the paired interval is much narrower than the spread of either."""
    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 1.0, 400)
    iv = paired_bootstrap_mean(shared, shared + 0.05 + rng.normal(0, 0.05, 400), n=1000)
    assert iv.excludes_zero and iv.low > 0 and iv.high - iv.low < 0.05


def test_mean_estimate_values_and_determinism():
    base, nc = np.array([0.0, 1.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0])
    a = paired_bootstrap_mean(base, nc, n=200, seed=5)
    assert (a.diff, a.base, a.nc, a.n_images, a.n_dropped, a.n_resamples) == (0.25, 0.5, 0.75, 4, 0, 200)
    assert a == paired_bootstrap_mean(base, nc, n=200, seed=5)
    assert not np.array_equal(resample_counts(4, 200, seed=5), resample_counts(4, 200, seed=6))
    assert a.low <= a.diff <= a.high


def test_resampled_mean_equals_indexing_with_the_same_draws():
    rng = np.random.default_rng(1)
    d = rng.normal(size=37)
    counts = resample_counts(37, 50, seed=3)
    idx = np.random.default_rng(3).integers(0, 37, size=(50, 37))
    assert (counts.sum(axis=1) == 37).all()
    np.testing.assert_allclose(counts @ d / 37, d[idx].mean(axis=1), rtol=1e-12)


def test_nan_images_are_dropped_and_counted():
    base = np.array([0.1, np.nan, 0.3, 0.4, 0.2])
    nc = np.array([0.2, 0.5, np.nan, 0.6, 0.3])
    iv = paired_bootstrap_mean(base, nc, n=100)
    assert iv.n_images == 3 and iv.n_dropped == 2
    assert iv.diff == pytest.approx(np.mean([0.1, 0.2, 0.1]))
    none = paired_bootstrap_mean(np.array([np.nan]), np.array([1.0]), n=10)
    assert none.n_images == 0 and math.isnan(none.diff) and not none.excludes_zero


def _naive_max_over_tau(base, nc, n, seed, level):
    """One resample at a time, indexing images: the definition."""
    b = base if base.ndim == 3 else base[:, None, :]
    c = nc if nc.ndim == 3 else nc[:, None, :]
    idx = np.random.default_rng(seed).integers(0, b.shape[0], size=(n, b.shape[0]))
    stats = [c[i].mean(axis=0).max(axis=-1).mean() - b[i].mean(axis=0).max(axis=-1).mean() for i in idx]
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    diff = c.mean(axis=0).max(axis=-1).mean() - b.mean(axis=0).max(axis=-1).mean()
    return diff, lo, hi


@pytest.mark.parametrize("shape", [(9, 5), (11, 3, 4)])
def test_max_over_tau_equals_a_naive_loop(shape):
    rng = np.random.default_rng(7)
    base, nc = rng.random(shape) < 0.4, rng.random(shape) < 0.6
    iv = paired_bootstrap_max_over_tau(base, nc, n=300, seed=2)
    diff, lo, hi = _naive_max_over_tau(base, nc, 300, 2, 0.95)
    assert (iv.diff, iv.low, iv.high) == pytest.approx((diff, lo, hi), abs=1e-12)


def test_repeated_threshold_columns_give_the_same_numbers():
    """Thresholds that binarise alike (1000 taus, <= 256 uint8 levels) are computed once."""
    rng = np.random.default_rng(11)
    levels = rng.random((60, 2, 8)) < 0.5
    repeat = np.repeat(np.arange(8), 4)                        # 32 thresholds, 8 distinct
    base, nc = levels[:, :, repeat], np.roll(levels, 1, axis=0)[:, :, repeat]
    iv = paired_bootstrap_max_over_tau(base, nc, n=200, seed=3)
    assert (iv.diff, iv.low, iv.high) == pytest.approx(_naive_max_over_tau(base, nc, 200, 3, 0.95), abs=1e-12)


def test_best_threshold_is_chosen_again_inside_each_resample():
    """Two thresholds, each best on half of the images: choosing tau once on all images would
    give every resample the same column; re-choosing gives max(column means) >= the fixed
    column's mean in every resample, so the interval of the baseline's max sits higher."""
    base = np.zeros((40, 2), dtype=bool)
    base[:20, 0] = True
    base[20:, 1] = True
    nc = np.zeros((40, 2), dtype=bool)
    iv = paired_bootstrap_max_over_tau(base, nc, n=400, seed=0)
    assert iv.base == 0.5 and iv.nc == 0.0
    assert iv.high <= -0.5     # every resample's best column has at least half the images


def test_max_over_tau_is_deterministic_and_checks_shapes():
    rng = np.random.default_rng(3)
    base, nc = rng.random((30, 6)) < 0.5, rng.random((30, 6)) < 0.5
    assert paired_bootstrap_max_over_tau(base, nc, seed=4) == paired_bootstrap_max_over_tau(base, nc, seed=4)
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap_max_over_tau(base, nc[:, :5])
    with pytest.raises(ValueError, match="positive number of resamples"):
        paired_bootstrap_mean(np.zeros(3), np.zeros(3), n=0)
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap_mean(np.zeros(3), np.zeros(3), level=1.0)


def test_max_over_tau_runs_by_counts_not_copies(monkeypatch):
    """Chunking of resamples and of threshold columns gives the same numbers as one block."""
    import nc_viz.metrics.bootstrap as bs

    rng = np.random.default_rng(9)
    base, nc = rng.random((50, 3, 20)) < 0.3, rng.random((50, 3, 20)) < 0.5
    whole = paired_bootstrap_max_over_tau(base, nc, n=64, seed=1)
    monkeypatch.setattr(bs, "_BLOCK_BYTES", 4 * 50 * 7)        # 7 columns per block
    assert paired_bootstrap_max_over_tau(base, nc, n=64, seed=1) == whole
    assert isinstance(whole, Interval) and whole.as_dict()["n_images"] == 50


# ------------------------------------------------------------------ per-image records

def test_records_stream_batch_by_batch_and_read_back_exactly(tmp_path):
    """Rows appended per batch, floats exact, NaN and missing kept apart, renamed on close."""
    from nc_viz.tasks.evaluate.records import RecordWriter, paired_values, read_records

    path = tmp_path / "out" / "records.csv"
    with RecordWriter(path, ["iou_0.5", "energy"]) as writer:
        for batch in range(3):
            writer.write([{"image_id": f"im{batch}", "role": role, "label": 2, "predicted": batch,
                           "correct": batch == 2, "iou_0.5": 0.1 * batch + (role == "nc"),
                           "energy": float("nan") if batch == 1 else 1 / 3}
                          for role in ("baseline", "nc")])
            assert not path.exists()                 # complete files only
        assert writer.rows_written == 6
    rows = read_records(path)
    assert len(rows) == 6 and rows[0]["image_id"] == "im0" and rows[5]["correct"] is True
    assert rows[2]["iou_0.5"] == 0.1 and rows[0]["energy"] == 1 / 3 and math.isnan(rows[2]["energy"])
    ids, base, nc = paired_values(rows, "iou_0.5")
    assert ids == ["im0", "im1", "im2"] and np.array_equal(nc - base, [1.0, 1.0, 1.0])
    iv = paired_bootstrap_mean(*paired_values(rows, "energy")[1:], n=50)
    assert iv.n_dropped == 1 and iv.diff == 0.0


def test_records_refuse_unknown_columns_and_leave_no_file_on_error(tmp_path):
    from nc_viz.tasks.evaluate.records import RecordWriter

    path = tmp_path / "records.csv"
    with pytest.raises(ValueError, match="unknown record columns"):
        with RecordWriter(path, ["energy"]) as writer:
            writer.write([{"image_id": "a", "role": "nc", "pointing": 1.0}])
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="distinct"):
        RecordWriter(path, ["label"])
