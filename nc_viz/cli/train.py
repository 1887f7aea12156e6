"""`ncviz train`: train a baseline and an NC model of the same small ResNet."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import check_device_option, finite_float


@click.command("train")
@click.option("-o", "--output", "out_dir", type=click.Path(), default="trained",
              show_default=True, help="Folder for baseline.pt and nc.pt.")
@click.option("--data", type=click.Choice(["synthetic", "cifar100"]), default="synthetic", show_default=True)
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="CIFAR-100 folder in torchvision's layout (never downloaded).")
@click.option("--arch", default="resnet20", show_default=True, help="Plain architecture; its _nc twin is trained too.")
@click.option("--train-count", type=click.IntRange(min=1), default=12000, show_default=True,
              help="Synthetic training images.")
@click.option("--val-count", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Synthetic held-out images (seed + 1000).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=finite_float(min=0, min_open=True), default=0.1, show_default=True)
@click.option("--reduction", type=click.IntRange(min=1), default=8, show_default=True,
              help="NC reduction ratio alpha (the supplement sweeps 1, 2, 4, 8, 16).")
@click.option("--placement", type=click.Choice(["stages", "blocks"]), default="stages", show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True,
              help="Synthetic image size (CIFAR is 32).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.option("--device", default="auto", show_default=True, callback=check_device_option,
              help="auto, cpu, cuda or cuda:N (CUDA: data on the GPU, bf16 autocast, channels_last).")
@click.option("--save-half", is_flag=True, help="Store weights as float16 (half the file size).")
@click.option("--overwrite", is_flag=True,
              help="Replace baseline.pt / nc.pt already in the folder (never the shipped demo pair).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, hidden=True)
def command(out_dir: str, data: str, data_dir: str | None, arch: str, train_count: int, val_count: int,
            seed: int, epochs: int, batch_size: int, lr: float, reduction: int, placement: str, size: int,
            threads: int | None, device: str, save_half: bool, overwrite: bool, max_steps: int | None) -> None:
    """Train ARCH and ARCH_nc on the same data and seed (on the GPU when there is one); report held-out accuracy.

    Example: ncviz train -o trained --epochs 12 --reduction 8
    """
    import torch

    from ..core.errors import UsageError
    from ..tasks.training.train import (TrainConfig, check_outputs, cifar100_set, synthetic_set,
        synthetic_stem_stride, train_pair, training_preprocess)

    from ..core.io import check_writable

    from ..tasks.training.recipe import resolve_training_device

    _check_plain_arch(arch)
    if data == "cifar100" and data_dir:  # the data first: nothing is written before they are known good
        from ..datasets.cifar import check_folder

        check_folder(data_dir)
    check_outputs(out_dir, overwrite=overwrite)
    check_writable(out_dir, folder=True)
    dev = resolve_training_device(device)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if data == "cifar100":
        if not data_dir:
            raise UsageError("--data cifar100 needs --data-dir (torchvision's CIFAR-100 layout)")
        train, held_out = cifar100_set(data_dir, True), cifar100_set(data_dir, False)
        config = TrainConfig(arch=arch, preprocess=training_preprocess("cifar100"), stem_stride=1, epochs=epochs,
                             batch_size=batch_size, lr=lr, seed=seed, reduction=reduction, placement=placement,
                             extra={"data": "cifar100"})
    else:
        click.echo(f"generating {train_count} + {val_count} synthetic images ...", err=True)
        train, held_out = synthetic_set(train_count, seed, size), synthetic_set(val_count, seed + 1000, size)
        config = TrainConfig(arch=arch, preprocess=training_preprocess("synthetic", size),
                             stem_stride=synthetic_stem_stride(arch), epochs=epochs,
                             batch_size=batch_size, lr=lr, seed=seed, reduction=reduction, placement=placement,
                             extra={"data": "synthetic", "data_seed": seed, "train_count": train_count})
    report = _run_with_progress(train_pair, config, train, held_out, Path(out_dir), max_steps, save_half, dev,
                                overwrite)
    for role in ("baseline", "nc"):
        click.echo(f"{role}: {report.paths[role]}  held-out accuracy {report.accuracy[role]:.4f}  "
                   f"({report.seconds[role]:.0f} s)")


def _check_plain_arch(arch: str) -> None:
    """--arch must name a registered plain architecture (its _nc twin is trained beside it)."""
    from ..core.errors import UsageError
    from ..models import get_arch

    try:
        spec = get_arch(arch)
    except ValueError as exc:
        raise UsageError(f"--arch: {exc}") from exc
    if spec.nc:
        raise UsageError(f"--arch {arch}: give the plain architecture ({spec.base}); its _nc twin is trained too")
    try:
        get_arch(f"{spec.base}_nc")
    except ValueError:
        raise UsageError(f"--arch {arch}: ncviz has no {spec.base}_nc to train beside it "
                         f"(see `ncviz models` for the architectures with an _nc variant)") from None


def _run_with_progress(train_pair, config, train, held_out, out_dir: Path, max_steps: int | None, half: bool,
                       device, overwrite: bool):
    """Run training with a rich progress bar on a terminal, quietly otherwise."""
    if not sys.stderr.isatty():
        return train_pair(config, train, held_out, out_dir, max_steps=max_steps, half=half, device=device,
                          overwrite=overwrite)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
                  TimeRemainingColumn(), transient=False) as progress:
        tasks = {}

        def on_step(role: str, step: int, total: int, loss: float) -> None:
            if role not in tasks:
                tasks[role] = progress.add_task(f"training {role}", total=total, loss=float("nan"))
            progress.update(tasks[role], completed=step, loss=loss)

        return train_pair(config, train, held_out, out_dir, on_step=on_step, max_steps=max_steps, half=half,
                          device=device, overwrite=overwrite)
