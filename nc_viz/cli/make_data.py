"""`ncviz make-data`: write a synthetic localisation data set to disk."""
from __future__ import annotations

import click


@click.command("make-data")
@click.argument("directory", type=click.Path())
@click.option("--count", type=click.IntRange(min=1), default=500, show_default=True, help="Number of images.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="Data set seed (the shipped models were trained on seed 0).")
@click.option("--size", type=click.IntRange(min=16, max=1024), default=64, show_default=True,
              help="Image side in pixels.")
def command(directory: str, count: int, seed: int, size: int) -> None:
    """Generate images, instance masks and labels.csv into DIRECTORY, and their boxes in the
    wsolevaluation layout (wsol/), as per-image Pascal-VOC XML (xml/) and as CUB files (cub/).

    Example: ncviz make-data heldout --count 1000 --seed 7
    """
    from ..datasets import read_annotated
    from ..datasets.writers import write_layouts
    from ..core.io import check_writable
    from ..datasets.synth import CLASS_NAMES, write_dataset

    check_writable(directory, folder=True)
    root = write_dataset(directory, count, seed, size)
    write_layouts(read_annotated(root, "ncviz", strict=True), root, CLASS_NAMES)
    click.echo(f"wrote {count} images, masks and labels.csv to {root}, with their boxes in "
               f"{root / 'wsol'} (--format wsol), {root / 'xml'} (--format imagenet) and "
               f"{root / 'cub'} (--format cub --images {root / 'images'})")
