"""`ncviz sweep`: the baseline and NC at each reduction ratio alpha, for each seed; one table."""
from __future__ import annotations

import sys

import click

from .options import check_device_option, finite_float

PUBLISHED_EPOCHS, SYNTHETIC_EPOCHS = 160, 8


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """`1,2,4` -> (1, 2, 4)."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: integers separated by commas, e.g. 1,2,4,8,16",
                                 ctx=ctx, param=param) from None


@click.command("sweep")
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder for runs/, table.md, table.tex, table.json and accuracy_vs_alpha.png/.pdf.")
@click.option("--merge", is_flag=True,
              help="Combine the finished runs of the sweep folders FOLDERS (one recipe) into -o, and rebuild "
                   "its table; no training.")
@click.option("--data", type=click.Choice(["synthetic", "cifar100"]), default="synthetic", show_default=True)
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="CIFAR-100 folder in torchvision's layout (never downloaded).")
@click.option("--arch", default="resnet20", show_default=True, help="Plain architecture; its _nc twin is swept.")
@click.option("--reductions", default="1,2,4,8,16", show_default=True, callback=_int_list,
              help="NC reduction ratios alpha, comma-separated.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per model: S..S+N-1 with --first-seed S.")
@click.option("--first-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="The first seed (e.g. seeds 3, 4 of a sweep on another machine: --first-seed 3 --seeds 2).")
@click.option("--placement", type=click.Choice(["stages", "blocks"]), default="stages", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Default: 160 on cifar100 (the published recipe), 8 on the synthetic shapes.")
@click.option("--milestones", default=None, callback=_int_list,
              help="Epochs (from 1) from which the rate is multiplied by --gamma. Default: 3/4 and 7/8 "
                   "of --epochs (120,140 of 160, as published).")
@click.option("--gamma", type=finite_float(min=0, min_open=True), default=0.1, show_default=True)
@click.option("--lr", type=finite_float(min=0, min_open=True), default=0.1, show_default=True)
@click.option("--momentum", type=finite_float(min=0), default=0.9, show_default=True)
@click.option("--nesterov/--no-nesterov", default=False, show_default=True)
@click.option("--weight-decay", type=finite_float(min=0), default=1e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--pad", type=click.IntRange(min=0), default=4, show_default=True,
              help="Random-crop padding in pixels (0: no crop).")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Random horizontal flips.")
@click.option("--train-count", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Synthetic training images.")
@click.option("--test-count", type=click.IntRange(min=1), default=500, show_default=True,
              help="Synthetic test images.")
@click.option("--size", type=click.IntRange(min=16), default=32, show_default=True, help="Synthetic image size.")
@click.option("--device", default="auto", show_default=True, callback=check_device_option,
              help="auto, cpu, cuda or cuda:N (under torchrun: each rank its own GPU).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
def command(folders: tuple[str, ...], out_dir: str, merge: bool, data: str, data_dir: str | None, arch: str,
            reductions: tuple[int, ...], seeds: int, first_seed: int, placement: str, epochs: int | None,
            milestones: tuple[int, ...] | None, gamma: float, lr: float, momentum: float, nesterov: bool,
            weight_decay: float, batch_size: int, pad: int, flip: bool, train_count: int, test_count: int, size: int,
            device: str, threads: int | None) -> None:
    """Train ARCH and ARCH_nc at each alpha for each seed; write the table and the plot.

    The recipe defaults to the published CIFAR-100 one. Rerun with the same settings, it skips
    finished runs and resumes an interrupted one; rerun with more alphas or seeds, it trains only
    the runs the folder lacks, and the table covers all its finished runs. Under `torchrun
    --nproc-per-node N --no-python ncviz sweep ...` each rank trains its share of the runs.

    Example: ncviz sweep --data cifar100 --data-dir DIR --reductions 1,2,4,8,16 --seeds 3 -o sweep

    Merge: ncviz sweep --merge A B -o C (a run in several folders: the first folder's is kept)
    """
    if merge or folders:
        return _merge(folders, out_dir)
    import torch

    from ..core.io import check_writable
    from ..tasks.training.recipe import Recipe
    from ..tasks.training.sweep import SweepSettings, run_sweep

    if threads:
        torch.set_num_threads(threads)
    epochs = epochs or (PUBLISHED_EPOCHS if data == "cifar100" else SYNTHETIC_EPOCHS)
    recipe = Recipe.for_epochs(epochs, milestones, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay, batch_size=batch_size, gamma=gamma, pad=pad, flip=flip)
    settings = SweepSettings(arch=arch, reductions=reductions, seeds=seeds, first_seed=first_seed, data=data,
                             placement=placement,
                             train_count=train_count, test_count=test_count, size=size, recipe=recipe)
    settings.check()
    check_writable(out_dir, folder=True)
    result = run_sweep(settings, out_dir, data_dir, device, on_event=_echo_event)
    if result.table is not None:
        from ..tasks.training.sweep import TABLE_MD

        click.echo((result.output_dir / TABLE_MD).read_text(encoding="utf-8"), nl=False)
        click.echo(f"written: {result.output_dir}/table.md, table.tex, table.json, accuracy_vs_alpha.png/.pdf")


_MERGE_OPTIONS = {"folders", "out_dir", "merge", "threads"}


def _merge(folders: tuple[str, ...], out_dir: str) -> None:
    """`--merge A B -o C`: FOLDERS go with --merge only, and no training option applies."""
    from ..core.errors import UsageError
    from ..core.io import check_writable

    ctx = click.get_current_context()
    if not ctx.params["merge"]:
        raise UsageError(f"{folders[0]}: sweep takes folders only with --merge (e.g. --merge A B -o C)")
    if not folders:
        raise UsageError("--merge: give the sweep folders to combine, e.g. --merge A B -o C")
    given = [p for p in ctx.command.params if p.name not in _MERGE_OPTIONS
             and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise UsageError(f"{given[0].opts[-1]}: does not apply with --merge (the folders' recipe is used)")
    check_writable(out_dir, folder=True)
    from ..tasks.training.sweep_merge import merge_sweeps

    report = merge_sweeps(folders, out_dir)
    for source, names in report.copied.items():
        click.echo(f"{source}: {len(names)} run{'s' if len(names) != 1 else ''} copied", err=True)
    if report.duplicates:
        click.echo(f"{len(report.duplicates)} run(s) found again, the first copy kept: "
                   f"{', '.join(report.duplicates[:5])}{' ...' if len(report.duplicates) > 5 else ''}", err=True)
    from ..tasks.training.sweep import TABLE_MD

    click.echo((report.output_dir / TABLE_MD).read_text(encoding="utf-8"), nl=False)
    click.echo(f"written: {report.output_dir}/table.md, table.tex, table.json, accuracy_vs_alpha.png/.pdf")


def _echo_event(kind: str, info: dict) -> None:
    """One line per run started and finished, and per epoch on a terminal."""
    if kind == "start":
        click.echo(f"training {info['run']} ({info['epochs']} epochs) ...", err=True)
    elif kind == "epoch" and sys.stderr.isatty():
        click.echo(f"  {info['run']} epoch {info['epoch']}: loss {info['loss']:.3f} "
                   f"accuracy {info['accuracy']:.3f} lr {info['lr']:g} ({info['seconds']:.1f} s)", err=True)
    elif kind == "done":
        click.echo(f"{info['variant']} seed {info['seed']}: test accuracy {info['test_accuracy']:.4f}", err=True)
