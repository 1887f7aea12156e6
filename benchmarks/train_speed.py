"""Training images/s of resnet20 and resnet20_nc with the sweep's loop (CIFAR shape: 32 px, 100 classes).

    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py [--device cpu|cuda] [--images 2048]
        [--epochs 2] [--batch-size 128] [--reduction 8] [--threads N] [--json FILE]

Random uint8 images stand in for CIFAR-100 (the speed does not depend on the pixels). The
first epoch is a warm-up (cuDNN autotuning, allocator); images/s is over the later epochs,
from the loop's own per-epoch seconds. It also prints how long the published 160-epoch
CIFAR-100 run (50,000 images per epoch, test pass excluded) would take at that rate. On CUDA the
loop is the sweep's fast path: data held on the GPU, channels_last, bf16 autocast
(`recipe.prepare_model`, `recipe.autocast`, `DataOnDevice`). `--json` also writes the numbers
(benchmarks/gpu_check.sh reads them).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from nc_viz.tasks.training.recipe import (DataOnDevice, ModelSpec, Recipe, TrainingState, make_optimizer,
    prepare_model, train_epoch)
from nc_viz.tasks.training.train import ImageSet, training_preprocess

CIFAR_TRAIN_IMAGES, PUBLISHED_EPOCHS = 50_000, 160


def fake_cifar(count: int, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 32, 32, 3), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 100, (count,), generator=g)
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(100)))


def images_per_second(arch: str, data: DataOnDevice, recipe: Recipe, reduction: int, device: torch.device) -> float:
    spec = ModelSpec(arch=arch, seed=0, stem_stride=1, preprocess=training_preprocess("cifar100"),
                     reduction=reduction if arch.endswith("_nc") else None)
    model = prepare_model(spec.build(100), device)
    state = TrainingState(model, make_optimizer(model, recipe), torch.Generator().manual_seed(0))
    seconds = []
    for _ in range(recipe.epochs):
        started = time.perf_counter()
        train_epoch(state, data.train_images, data.train_labels, spec, recipe, device)  # reads back at its end
        seconds.append(time.perf_counter() - started)
    timed = seconds[1:] or seconds
    return len(data.train_labels) * len(timed) / sum(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2, help="the first is a warm-up")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--reduction", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    recipe = Recipe(batch_size=args.batch_size, epochs=args.epochs)
    data = DataOnDevice.from_sets(fake_cifar(args.images), fake_cifar(16, 1), device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, " \
        f"{torch.get_num_threads()} threads"
    print(f"device {device} ({name}); {args.images} images of 32 px per epoch, batch {args.batch_size}, "
          f"{args.epochs} epochs (first one a warm-up); torch {torch.__version__}")
    print("| model | train images/s | 160 epochs of CIFAR-100 (estimate) |")
    print("|---|---|---|")
    rows = {}
    for arch in ("resnet20", "resnet20_nc"):
        rate = images_per_second(arch, data, recipe, args.reduction, device)
        minutes = CIFAR_TRAIN_IMAGES * PUBLISHED_EPOCHS / rate / 60
        label = arch if arch == "resnet20" else f"{arch} (alpha {args.reduction})"
        print(f"| {label} | {rate:,.0f} | {minutes:,.1f} min |")
        rows[label] = {"images_per_s": rate, "minutes_160_epochs": minutes}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": name, "images": args.images, "epochs": args.epochs, "batch_size": args.batch_size,
                       "models": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
