"""`ncviz models`: the registered architectures, their sizes and whether CAM is exact."""
from __future__ import annotations

import click


@click.command("models")
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--reduction", type=click.IntRange(min=1), default=8, show_default=True,
              help="NC reduction ratio alpha for the _nc variants.")
@click.option("--placement", type=click.Choice(["stages", "blocks"]), default="stages", show_default=True,
              help="NC placement for the _nc variants (families without blocks use stages).")
@click.option("--family", default=None, help="List one family only (e.g. densenet); all of them take about 40 s "
              "on a 2-core CPU, as each model is built (on the meta device) to count its parameters.")
def command(num_classes: int, reduction: int, placement: str, family: str | None) -> None:
    """List every architecture with its family, input size, parameter count, and whether CAM
    is exact (logits = W . mean_xy F + b: --method cam and the neuron maps apply; otherwise only
    the gradient methods). `--arch timm:NAME` takes any timm model besides these.

    Example: ncviz models --num-classes 100
    """
    from ..core.errors import UsageError
    from ..models import get_arch, iter_arch_rows, list_archs, list_families

    if family is not None and family not in list_families():
        raise UsageError(f"--family: unknown family {family!r}; known: {', '.join(list_families())}")
    names = list_archs(family)
    if names:  # rows are printed as they are counted: a large model takes about a second
        width = max(map(len, names))
        fam = max(len(get_arch(n).family) for n in names)
        click.echo(f"{'name':<{width}}  {'family':<{fam}}  {'input':>5}  {'parameters':>12}  cam")
        for r in iter_arch_rows(num_classes=num_classes, reduction=reduction, placement=placement, family=family):
            exact = "exact" if r["cam_exact"] else "no (gradient methods)"
            click.echo(f"{r['name']:<{width}}  {r['family']:<{fam}}  {r['input_size']:>5}  "
                       f"{r['parameters']:>12,}  {exact}")
    if family in (None, "timm"):
        click.echo(_timm_line(after_table=bool(names)))


def _timm_line(after_table: bool) -> str:
    """How to name a timm model, and whether timm is installed (asked without importing it)."""
    from importlib import metadata

    try:
        installed = f"timm {metadata.version('timm')} is installed"
    except metadata.PackageNotFoundError:
        installed = "timm is not installed: pip install 'ncviz[timm]'"
    lead = "\nand any" if after_table else "Any"
    return (f"{lead} timm model as timm:NAME (e.g. --arch timm:resnet50d; CAM where its head is a plain "
            f"average pool + linear, checked on loading; {installed})")
