"""The training recipe as it reaches the model: the batch it sees (padded crops and flips), the
optimiser it steps (weight decay, momentum), the crop offsets drawn (0 to 2 * pad), and the
sweep table's spread over seeds (the sample standard deviation), each against numbers by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nc_viz.models.preprocessing import Preprocess
from nc_viz.tasks.training.recipe import (EpochDraws, ModelSpec, Recipe, TrainingState, crop_and_flip,
    make_optimizer, train_epoch)

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)


class Capture(nn.Module):
    """Remembers every batch it is given; a linear layer so that the optimiser has work."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(x.mean(dim=(2, 3)))


def _by_hand(image: np.ndarray, dy: int, dx: int, flip: bool, pad: int) -> np.ndarray:
    """Zero-pad by `pad`, take the H x W window at (dy, dx), mirror left-right if `flip`,
    normalise with MEAN and STD: (3, H, W) float."""
    h, w, _ = image.shape
    padded = np.zeros((h + 2 * pad, w + 2 * pad, 3), np.float64)
    padded[pad:pad + h, pad:pad + w] = image
    crop = padded[dy:dy + h, dx:dx + w]
    if flip:
        crop = crop[:, ::-1]
    return ((crop / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1)


def test_the_training_batch_is_cropped_and_flipped(monkeypatch):
    pad = 2
    images = (torch.arange(3 * 4 * 5 * 3, dtype=torch.int64).view(3, 4, 5, 3) % 250 + 1).to(torch.uint8)
    labels = torch.tensor([0, 1, 0])
    order, flips = torch.tensor([2, 0, 1]), torch.tensor([True, False, True])
    offsets = torch.tensor([[0, 0], [2 * pad, 2 * pad], [1, 3]])                 # corners and one in between
    monkeypatch.setattr(EpochDraws, "draw", classmethod(lambda cls, count, p, generator: cls(order, flips, offsets)))
    model = Capture()
    recipe = Recipe(batch_size=3, pad=pad, flip=True, epochs=1, milestones=())
    spec = ModelSpec(arch="resnet20", seed=0, stem_stride=1, preprocess=Preprocess(4, MEAN, STD, crop_pct=1.0))
    state = TrainingState(model, make_optimizer(model, recipe), torch.Generator().manual_seed(0))
    train_epoch(state, images, labels, spec, recipe, torch.device("cpu"))
    (batch,) = model.seen
    for row, index in enumerate(order.tolist()):               # the draws are per image, the rows in `order`
        (dy, dx), flip = offsets[index].tolist(), bool(flips[index])
        expected = _by_hand(images[index].numpy(), dy, dx, flip, pad)
        assert batch[row].double().numpy() == pytest.approx(expected, abs=1e-5), row
    model.seen.clear()
    plain = Recipe(batch_size=3, pad=0, flip=False, epochs=1, milestones=())    # no augmentation: the images
    train_epoch(TrainingState(model, make_optimizer(model, plain), torch.Generator()), images, labels, spec, plain,
                torch.device("cpu"))
    for row, index in enumerate(order.tolist()):
        assert model.seen[0][row].double().numpy() == pytest.approx(_by_hand(images[index].numpy(), 0, 0, False, 0),
                                                                    abs=1e-5)


def test_a_crop_at_offset_two_pad_shifts_the_image_up_and_left():
    images = (torch.arange(1 * 3 * 4 * 3).view(1, 3, 4, 3) + 1).to(torch.uint8)
    out = crop_and_flip(images, torch.tensor([[4, 4]]), None, pad=2)
    expected = np.zeros((3, 4, 3), np.uint8)
    expected[:1, :2] = images[0, 2:, 2:].numpy()          # the bottom-right corner lands top-left, zeros after
    assert np.array_equal(out[0].numpy(), expected)
    flipped = crop_and_flip(images, torch.tensor([[4, 4]]), torch.tensor([True]), pad=2)
    assert np.array_equal(flipped[0].numpy(), expected[:, ::-1])


def test_crop_offsets_cover_0_to_2_pad_and_flips_both_ways():
    for pad in (1, 4):
        draws = EpochDraws.draw(400, pad, torch.Generator().manual_seed(3))
        assert sorted(draws.order.tolist()) == list(range(400))
        for column in (0, 1):
            assert set(draws.offsets[:, column].tolist()) == set(range(2 * pad + 1)), (pad, column)
        assert 100 < int(draws.flips.sum()) < 300
    assert not EpochDraws.draw(50, 0, torch.Generator().manual_seed(0)).offsets.any()


# ----------------------------------------------------------------------------- the optimiser


def test_the_optimiser_holds_the_recipes_knobs_over_every_parameter():
    from nc_viz.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet20_nc", 3, input_size=16)
    recipe = Recipe(lr=0.05, momentum=0.8, weight_decay=3e-4, nesterov=True)
    optimizer = make_optimizer(model, recipe)
    (group,) = optimizer.param_groups
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.05, 0.8, 3e-4, True)
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}   # NC and BatchNorm too


def test_one_sgd_step_decays_the_weight_by_hand():
    """w = 2, loss = 3 w (gradient 3), lr 0.5, weight decay 0.1, momentum 0.9:
    step 1: d = 3 + 0.1 * 2 = 3.2, w = 2 - 0.5 * 3.2 = 0.4;
    step 2: buffer = 0.9 * 3.2 + (3 + 0.1 * 0.4) = 5.92, w = 0.4 - 0.5 * 5.92 = -2.56."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    optimizer = make_optimizer(model, Recipe(lr=0.5, momentum=0.9, weight_decay=0.1))
    for expected in (0.4, -2.56):
        optimizer.zero_grad()
        (3 * model.weight).sum().backward()
        optimizer.step()
        assert float(model.weight.detach()) == pytest.approx(expected, abs=1e-6)


# ----------------------------------------------------------------------------- the sweep's table


def test_sweep_table_spread_is_the_sample_standard_deviation(monkeypatch):
    """Accuracies 70, 72, 77 %: mean 73, sample std sqrt(((-3)^2 + (-1)^2 + 4^2) / 2) = sqrt(13)
    (the population std would be sqrt(26 / 3))."""
    from nc_viz.tasks.training import sweep

    monkeypatch.setattr(sweep, "model_cost", lambda settings, run, num_classes: (1, 1))   # no model built
    settings = sweep.SweepSettings(reductions=(4,), seeds=3)
    results = [{"reduction": r, "test_accuracy": a} for r, accs in ((None, (0.70, 0.72, 0.77)), (4, (0.5, 0.5, 0.5)))
               for a in accs]
    rows = {row["alpha"]: row for row in sweep.build_table(settings, results, None)["rows"]}
    assert rows[None]["accuracy_mean"] == pytest.approx(73.0)
    assert rows[None]["accuracy_std"] == pytest.approx(13 ** 0.5, abs=1e-4)
    assert rows[4]["accuracy_mean"] == pytest.approx(50.0) and rows[4]["accuracy_std"] == 0.0
    single = sweep.build_table(sweep.SweepSettings(reductions=(4,), seeds=1),
                               [{"reduction": None, "test_accuracy": 0.6}, {"reduction": 4, "test_accuracy": 0.7}],
                               None)
    assert [row["accuracy_std"] for row in single["rows"]] == [None, None]     # one seed: no spread, not 0


# ----------------------------------------------------------------------------- the input a run records


def test_a_run_holds_one_preprocessing_record_and_its_checkpoint_keeps_it():
    """`sweep` and `train` runs hold their input as one `Preprocess`: CIFAR-100 at 32 px with its
    statistics, the synthetic shapes at their size with mean 0.5 and std 0.25, nothing cropped; it
    is what the checkpoint records and what the batches are normalised with."""
    from nc_viz.tasks.training import sweep
    from nc_viz.tasks.training.train import TrainConfig, meta_for, to_input

    cifar = Preprocess(32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), crop_pct=1.0)
    synthetic = Preprocess(24, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_pct=1.0)
    for data, expected in (("cifar100", cifar), ("synthetic", synthetic)):
        spec = sweep.model_spec(sweep.SweepSettings(data=data, size=24), sweep.Run(4, 1))
        assert spec.preprocess == expected and spec.input_size == expected.input_size
        assert spec.meta(("a", "b"), {}).preprocess == expected
    config = TrainConfig()
    assert config.preprocess == Preprocess(64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_pct=1.0)
    assert meta_for(config, "resnet20", ("a", "b")).preprocess == config.preprocess and config.input_size == 64
    images = torch.tensor([[[[255, 0, 51]]]], dtype=torch.uint8)                      # one pixel, (1, 1, 1, 3)
    x = to_input(images, Preprocess(1, MEAN, STD, crop_pct=1.0))
    assert x.flatten().tolist() == pytest.approx([(1.0 - 0.5) / 0.25, (0.0 - 0.4) / 0.2, (0.2 - 0.3) / 0.1])
