"""How `batch` splits a CPU's cores between forward passes and drawing: multiply-adds counted
against torchvision's published operation counts and by hand, the split by hand, and a folder
run that applies it and gives the process its thread count back."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nc_viz.engine.workers import SECONDS_PER_MULTIPLY_ADD, SECONDS_PER_PANEL_PIXEL, forward_threads
from nc_viz.models.cost import multiply_adds


def test_multiply_adds_by_hand():
    """Conv 3->4, 3x3, padding 1 on 8x8: 4*8*8 outputs * 3*3*3 inputs = 6912; grouped conv 4->4
    in 2 groups, 1x1: 4*8*8 * 2 = 512; linear 4->2: 2 * 4 = 8. Pooling counts nothing."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 1, groups=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert multiply_adds(model.eval(), 8) == 6912 + 512 + 8


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_multiply_adds_match_torchvision_published_counts(name):
    """torchvision publishes each architecture's GFLOPS at 224 px (weights meta `_ops`, in
    multiply-adds); the count here, on the model built without weights, agrees to 3 decimals."""
    torchvision = pytest.importorskip("torchvision")
    weights = torchvision.models.get_model_weights(name)
    published = next(iter(weights)).meta["_ops"]
    model = torchvision.models.get_model(name, weights=None).eval()
    assert multiply_adds(model, 224) / 1e9 == pytest.approx(published, abs=5e-4)


def test_the_split_follows_the_two_works():
    """Cores in proportion to forward and drawing work, at least 1, at most all."""
    demo, resnet101_pair = 99.5e6, 2 * 7.80e9
    neurons, compare = 18 * 224 * 224, 3 * 224 * 224
    # the demo pair: 2.6 ms of forward per image against 15.7 ms (neurons) or 2.6 ms (compare) of drawing
    assert demo * SECONDS_PER_MULTIPLY_ADD == pytest.approx(2.6e-3)
    assert neurons * SECONDS_PER_PANEL_PIXEL == pytest.approx(15.7e-3)
    assert forward_threads(2, demo, neurons) == 1   # 2 * 0.14 -> at least 1
    assert forward_threads(2, demo, compare) == 1   # 2 * 0.50
    assert forward_threads(16, demo, compare) == 8  # 16 * 0.50
    assert forward_threads(16, demo, neurons) == 2  # 16 * 0.14 = 2.3
    assert forward_threads(2, resnet101_pair, neurons) == 2
    assert forward_threads(1, resnet101_pair, neurons) == 1
    assert forward_threads(4, 0, 0) == 4


def test_a_folder_run_on_the_cpu_runs_its_forward_passes_on_the_split(tmp_path, rgb_image, monkeypatch):
    """The demo pair's forward passes run on 1 thread beside the render threads (2 torch
    threads, a neurons figure); the process has its 2 threads again after the run."""
    import shutil

    import nc_viz.pair as pair_module
    from nc_viz.tasks.batch import BatchOptions, run_batch
    from nc_viz.pair import PairSpec

    seen = []
    real = pair_module.ModelPair.run
    monkeypatch.setattr(pair_module.ModelPair, "run",
                        lambda self, *a, **k: seen.append(torch.get_num_threads()) or real(self, *a, **k))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        shutil.copy(rgb_image, folder / f"{i}.png")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_batch(folder, tmp_path / "out", pair_spec=PairSpec(device="cpu"),
                  options=BatchOptions(layout="neurons", workers=0, render_threads=2))
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _WorkersThatCannotStart:
    def __iter__(self):
        raise OSError("no room for the decode workers (injected)")


@pytest.mark.parametrize("where", ["making the loader", "starting its workers"])
def test_the_thread_count_comes_back_when_the_run_cannot_start_its_loader(tmp_path, rgb_image, monkeypatch, where):
    import shutil

    import nc_viz.tasks.batch.shard as shard
    from nc_viz.pair import PairSpec
    from nc_viz.tasks.batch import BatchOptions, run_batch

    def broken(*args, **kwargs):
        if where == "making the loader":
            raise OSError("no room for the decode workers (injected)")
        return _WorkersThatCannotStart()

    monkeypatch.setattr(shard, "make_loader", broken)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(rgb_image, folder / "a.png")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(OSError, match="injected"):
            run_batch(folder, tmp_path / "out", pair_spec=PairSpec(device="cpu"),
                      options=BatchOptions(layout="neurons", workers=0, render_threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
