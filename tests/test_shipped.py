"""The shipped demo pair: it loads with no flags and meets its accuracy target on fresh data."""
from __future__ import annotations

from pathlib import Path

import pytest

from nc_viz.pair import default_checkpoints, load_model_pair
from nc_viz.cli import main
from nc_viz.tasks.training.train import TrainConfig, accuracy, synthetic_set


def test_shipped_files_are_small():
    for path in default_checkpoints():
        assert path.stat().st_size <= 5_000_000, path


@pytest.mark.parametrize("seed", [4242, 987_654])  # neither the training (0) nor validation (1000) seed
def test_shipped_pair_meets_the_accuracy_target_on_a_fresh_seed(seed):
    pair = load_model_pair(device="cpu")
    data = synthetic_set(300, seed, pair.preprocess.input_size)
    for loaded in pair.roles.values():
        meta = loaded.meta
        acc = accuracy(loaded.model, data, TrainConfig(preprocess=meta.preprocess))
        assert acc >= 0.95, f"{meta.arch}: {acc:.3f} on seed {seed}"


def test_compare_without_checkpoints_uses_the_shipped_pair(tmp_path, capsys):
    """The figure is drawn by the shipped files, each in its role: the saved logits are those of
    pretrained/baseline.pt and pretrained/nc.pt on the sample, and both name the sample's shape."""
    import numpy as np
    import torch
    from PIL import Image

    from nc_viz.models.checkpoints import load_checkpoint

    root = Path(__file__).resolve().parent.parent
    sample = root / "samples" / "multi_circle.png"
    out, maps = tmp_path / "fig.png", tmp_path / "maps.npz"
    assert main(["compare", str(sample), "-o", str(out), "--save-maps", str(maps)]) == 0, capsys.readouterr().err
    with Image.open(out) as fig:
        assert fig.format == "PNG" and fig.width > 3 * 64
    data = np.load(maps)
    picture = np.asarray(Image.open(sample).convert("RGB"), dtype=np.float32)  # 64 px: the input size
    x = torch.from_numpy((picture / 255.0 - 0.5) / 0.25).permute(2, 0, 1)[None]  # the shipped mean and std
    np.testing.assert_allclose(data["input"], x.numpy(), atol=1e-6)
    for role in ("baseline", "nc"):
        model = load_checkpoint(root / "pretrained" / f"{role}.pt", device="cpu").model
        with torch.no_grad():
            logits = model(x)
        np.testing.assert_allclose(data[f"{role}_logits"], logits.numpy(), rtol=1e-5, atol=1e-5)
        assert data[f"{role}_class"].tolist() == [0]  # circle, as the shipped models see it


def test_only_one_of_baseline_and_nc_is_a_usage_error(tmp_path, capsys):
    base, _ = default_checkpoints()
    sample = next(base.parent.parent.glob("samples/*.png"))
    assert main(["compare", str(sample), "--baseline", str(base), "-o", str(tmp_path / "f.png")]) == 2
    assert "both --baseline and --nc" in capsys.readouterr().err
