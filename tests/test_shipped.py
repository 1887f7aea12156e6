"""The shipped demo pair: it loads with no flags and meets its accuracy target on fresh data."""
from __future__ import annotations


import pytest

from nc_viz.api import default_checkpoints, load_model_pair
from nc_viz.cli import main
from nc_viz.train import TrainConfig, accuracy, synthetic_set


def test_shipped_files_are_small():
    for path in default_checkpoints():
        assert path.stat().st_size <= 5_000_000, path


@pytest.mark.parametrize("seed", [4242, 987_654])  # neither the training (0) nor validation (1000) seed
def test_shipped_pair_meets_the_accuracy_target_on_a_fresh_seed(seed):
    pair = load_model_pair(device="cpu")
    data = synthetic_set(300, seed, pair.preprocess.input_size)
    for loaded in (pair.baseline, pair.nc):
        meta = loaded.meta
        acc = accuracy(loaded.model, data, TrainConfig(mean=meta.mean, std=meta.std))
        assert acc >= 0.95, f"{meta.arch}: {acc:.3f} on seed {seed}"


def test_compare_without_checkpoints_uses_the_shipped_pair(tmp_path, capsys):
    from pathlib import Path

    sample = next(Path(__file__).resolve().parent.parent.glob("samples/multi_*.png"))
    out = tmp_path / "fig.png"
    assert main(["compare", str(sample), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_only_one_of_baseline_and_nc_is_a_usage_error(tmp_path, capsys):
    base, _ = default_checkpoints()
    sample = next(base.parent.parent.glob("samples/*.png"))
    assert main(["compare", str(sample), "--baseline", str(base), "-o", str(tmp_path / "f.png")]) == 2
    assert "both --baseline and --nc" in capsys.readouterr().err
