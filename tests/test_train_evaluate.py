"""Training smoke runs, CIFAR-100 from disk, make-data and evaluate on tiny sets."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nc_viz.models.checkpoints import load_checkpoint
from nc_viz.cli import main
from nc_viz.tasks.training.train import (ImageSet, TrainConfig, accuracy, build_for_training, train_model,
    training_preprocess)
from conftest import fake_cifar100


def _dark_or_bright(count: int = 32, seed: int = 0) -> ImageSet:
    """An easy task: class 0 pictures are dark (0..65), class 1 bright (190..255)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = np.where(labels[:, None, None, None] == 1, 190, 0) + rng.integers(0, 66, (count, 32, 32, 3))
    return ImageSet(torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels), ("dark", "bright"))


def test_a_few_training_steps_lower_the_loss_and_are_seeded():
    data = _dark_or_bright()
    config = TrainConfig(arch="resnet20", preprocess=training_preprocess("synthetic", 32), stem_stride=1,
                         batch_size=16, lr=0.05, epochs=4)
    losses = []
    model = build_for_training(config, "resnet20", len(data.classes))
    train_model(model, data, config, on_step=lambda s, t, loss: losses.append(loss), max_steps=8)
    assert len(losses) == 8 and all(np.isfinite(losses))
    # chance is ln 2 = 0.69; eight steps on this task take it near zero (measured 0.91 -> 0.014)
    assert max(losses[-3:]) < 0.25 * losses[0], losses
    again = []
    twin = build_for_training(config, "resnet20", len(data.classes))
    train_model(twin, data, config, on_step=lambda s, t, loss: again.append(loss), max_steps=8)
    assert again == pytest.approx(losses, rel=1e-4)


class _ReadsItsAnswer(torch.nn.Module):
    """Predicts the class written in the red value of the top-left pixel (undoing TrainConfig's
    default normalisation, mean 0.5 and std 0.25)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = (x[:, 0, 0, 0] * 0.25 + 0.5) * 255
        return torch.nn.functional.one_hot(value.round().long(), 4).float()


def test_accuracy_is_the_share_of_right_answers():
    predicted = np.array([0, 1, 2, 3, 0, 1, 2, 3, 1, 2])
    labels = np.array([0, 1, 2, 0, 0, 1, 3, 3, 2, 2])  # right on 7 of 10
    images = np.zeros((10, 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = predicted
    data = ImageSet(torch.from_numpy(images), torch.from_numpy(labels), tuple("abcd"))
    assert accuracy(_ReadsItsAnswer(), data, TrainConfig(), batch_size=4) == pytest.approx(0.7)
    assert accuracy(_ReadsItsAnswer(), data, TrainConfig(), batch_size=256) == pytest.approx(0.7)


def test_train_command_writes_a_loadable_pair_with_metadata(tmp_path, capsys):
    code = main(["train", "-o", str(tmp_path), "--train-count", "32", "--val-count", "16", "--size", "32",
                 "--epochs", "1", "--batch-size", "16", "--max-steps", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "held-out accuracy" in out
    for name, arch in (("baseline.pt", "resnet20"), ("nc.pt", "resnet20_nc")):
        loaded = load_checkpoint(tmp_path / name)
        meta = loaded.meta
        assert meta.arch == arch and meta.num_classes == len(meta.class_names) >= 8
        assert meta.input_size == 32 and meta.stem_stride == 2 and meta.preprocess.crop_pct == 1.0
        assert "held_out_accuracy" in meta.extra


def test_cifar100_from_disk_trains_without_download(tmp_path, monkeypatch, capsys):
    fake_cifar100(tmp_path / "data")  # torchvision's layout; no checksum: the files are read as data only
    code = main(["train", "--data", "cifar100", "--data-dir", str(tmp_path / "data"), "-o", str(tmp_path / "out"),
                 "--epochs", "1", "--batch-size", "8", "--max-steps", "1"])
    assert code == 0, capsys.readouterr().err
    meta = load_checkpoint(tmp_path / "out" / "nc.pt").meta
    assert meta.num_classes == 100 and meta.class_names[3] == "c3" and meta.input_size == 32


def test_cifar100_missing_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--data", "cifar100", "--data-dir", str(tmp_path), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "CIFAR-100" in err and "\n" not in err.strip()


def test_make_data_then_evaluate_reports_both_models(tmp_path, capsys):
    data = tmp_path / "heldout"
    assert main(["make-data", str(data), "--count", "12", "--seed", "3", "--size", "32"]) == 0
    assert main(["train", "-o", str(tmp_path / "m"), "--train-count", "16", "--val-count", "8", "--size", "32",
                 "--max-steps", "1", "--batch-size", "8"]) == 0
    capsys.readouterr()
    scores = tmp_path / "scores.json"
    code = main(["evaluate", str(data), "--baseline", str(tmp_path / "m" / "baseline.pt"),
                 "--nc", str(tmp_path / "m" / "nc.pt"), "--json", str(scores), "--top", "4", "--bootstrap", "50"])
    out = capsys.readouterr().out
    assert code == 0 and "| top-1 accuracy |" in out
    result = json.loads(scores.read_text())["results"]
    for role in ("baseline", "nc"):
        by_hand = _evaluate_by_hand(tmp_path / "m" / f"{role}.pt", data)
        for key, value in by_hand.items():
            assert result[role][key] == pytest.approx(value, abs=1e-5), (role, key)
        assert result[role]["images"] == 12
    assert "published 'Corr'" in out


def _evaluate_by_hand(checkpoint, data_dir) -> dict[str, float]:
    """Accuracy, CAM energy in the masks, pointing game and the published 'Corr' of one model on a
    make-data set (pictures at the input size, no crop), with numpy, OpenCV's bicubic resize (the
    reference's, clovaai/wsolevaluation) and our own hook (README "The maths, briefly")."""
    import csv

    import cv2
    from PIL import Image

    loaded = load_checkpoint(checkpoint)
    model, meta = loaded.model, loaded.meta
    seen = []
    model.avgpool.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    right, energy, pointing, corr = [], [], [], []
    with open(data_dir / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        picture = np.asarray(Image.open(data_dir / row["file"]).convert("RGB"), dtype=np.float32) / 255.0
        size = meta.input_size
        assert picture.shape[:2] == (size, size)
        x = torch.from_numpy((picture - np.array(meta.preprocess.mean, np.float32)) / np.array(meta.preprocess.std, np.float32))
        with torch.no_grad():
            logits = model(x.permute(2, 0, 1)[None])[0]
        f = seen.pop()[0].double()                                      # (C, h, w)
        label, instances = int(row["label"]), int(row["instances"])
        right.append(float(int(logits.argmax()) == label))
        cam = torch.einsum("c,chw->hw", model.fc.weight.detach()[label].double(), f).float().numpy()  # true class
        up = cv2.resize(cam.astype(np.float64), (size, size), interpolation=cv2.INTER_CUBIC)
        ids = np.asarray(Image.open(data_dir / row["file"].replace("images/", "masks/")))
        inside = (ids >= 1) & (ids <= instances)
        positive = np.maximum(up, 0)
        energy.append(positive[inside].sum() / positive.sum() if positive.sum() > 0 else 0.0)
        y, x0 = np.unravel_index(np.argmax(up), up.shape)               # min-max keeps the argmax
        yy, xx = np.mgrid[:size, :size]
        near = (yy - y) ** 2 + (xx - x0) ** 2 < (15 * size / 224) ** 2   # 15 px at 224, scaled
        pointing.append(float((inside & near).any()))
        flat = f.reshape(f.shape[0], -1).numpy()
        centred = flat - flat.mean(0, keepdims=True)                    # minus the mean over channels
        norm = np.linalg.norm(centred, axis=1, keepdims=True)
        unit = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 1e-9)
        corr.append(np.abs(unit @ unit.T).mean())
    return {"accuracy": np.mean(right), "energy": np.mean(energy), "pointing_game": np.mean(pointing),
            "published_corr": np.mean(corr)}


def test_evaluate_scores_a_perfect_localiser_as_perfect(tmp_path):
    """A CAM that is exactly the object mask scores 1 on energy, pointing and coverage."""
    from oracles import energy_in_masks, instance_coverage, pointing_game
    from nc_viz.datasets.synth import generate_sample
    from nc_viz.metrics.map_kernels import energy_and_coverage
    from nc_viz.metrics.wsol import pointing_hit

    sample = next(s for s in (generate_sample(i, 0, 64) for i in range(50)) if s.masks.shape[0] > 1)
    masks = torch.from_numpy(sample.masks)
    cam = masks.any(0).float()
    assert energy_in_masks(cam, masks) == pytest.approx(1.0)
    assert pointing_game(cam, masks)
    assert instance_coverage(cam, masks) == pytest.approx(1.0)
    regions = np.ascontiguousarray(sample.masks != 0)            # evaluate's compiled kernels agree
    assert energy_and_coverage(cam.double().numpy(), regions, 0.5) == (1.0, 1.0)
    assert pointing_hit(cam.numpy(), regions, tolerance_px=1)


def test_evaluate_refuses_data_of_other_classes(small_pair, tmp_path, capsys):
    """small_pair has 5 classes named circle, square, triangle, star, cross; the data has 9."""
    data = tmp_path / "heldout"
    assert main(["make-data", str(data), "--count", "30", "--seed", "3", "--size", "32"]) == 0
    base, nc = small_pair
    code = main(["evaluate", str(data), "--baseline", str(base), "--nc", str(nc)])
    err = capsys.readouterr().err
    assert code == 1 and "they were not trained on this data" in err and "\n" not in err.strip()


def test_evaluate_refuses_models_whose_class_names_differ(tmp_path, capsys):
    """Same number of classes, other order: the label range alone would not catch it."""
    from nc_viz.models.checkpoints import ModelMeta, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess
    from nc_viz.models import build_model
    from nc_viz.datasets.synth import CLASS_NAMES

    data = tmp_path / "heldout"
    assert main(["make-data", str(data), "--count", "4", "--seed", "3", "--size", "32"]) == 0
    names = tuple(reversed(CLASS_NAMES))
    paths = []
    for arch in ("resnet20", "resnet20_nc"):
        meta = ModelMeta(arch=arch, num_classes=len(names), class_names=names, preprocess=Preprocess(32),
                         reduction=8 if arch.endswith("_nc") else None,
                         placement="stages" if arch.endswith("_nc") else None)
        paths.append(save_checkpoint(tmp_path / f"{arch}.pt", build_model(arch, len(names), input_size=32), meta))
    capsys.readouterr()
    code = main(["evaluate", str(data), "--baseline", str(paths[0]), "--nc", str(paths[1])])
    err = capsys.readouterr().err
    assert code == 1 and "in the data but" in err and "in the models" in err, err
