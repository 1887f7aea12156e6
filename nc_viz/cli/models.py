"""`ncviz models`: the registered architectures and their sizes."""
from __future__ import annotations

import click


@click.command("models")
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--reduction", type=click.IntRange(min=1), default=8, show_default=True,
              help="NC reduction ratio alpha for the _nc variants.")
@click.option("--placement", type=click.Choice(["stages", "blocks"]), default="stages", show_default=True)
def command(num_classes: int, reduction: int, placement: str) -> None:
    """List every architecture with its parameter count.

    Example: ncviz models --num-classes 100
    """
    from ..models import describe_archs

    rows = describe_archs(num_classes=num_classes, reduction=reduction, placement=placement)
    width = max(len(r["name"]) for r in rows)
    click.echo(f"{'name':<{width}}  {'family':<8}  {'input':>5}  {'parameters':>12}")
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['family']:<8}  {r['input_size']:>5}  {r['parameters']:>12,}")
