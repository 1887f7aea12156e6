"""`ncviz classes`: the class names `--target` accepts, index and name, one per line."""
from __future__ import annotations

import click

from .options import checkpoint_options, class_names_option


@click.command("classes")
@checkpoint_options
@class_names_option
def command(baseline: str | None, nc: str | None, arch: str | None, nc_arch: str | None,
            class_names: str | None) -> None:
    """List the classes of the models (INDEX<TAB>NAME per line), or of a --class-names FILE.

    Without --baseline/--nc and without --class-names: the shipped demo pair. With
    --class-names alone, no model is loaded; with checkpoints too, the file must have as many
    names as the models have classes.

    Example: ncviz classes --baseline base.pt --nc nc.pt --class-names cifar100.txt
    """
    from ..models.class_names import class_lines, read_class_names

    if class_names is not None and baseline is None and nc is None:
        names = read_class_names(class_names)
        num_classes = len(names)
    else:
        from ..pair import load_model_pair

        pair = load_model_pair(baseline, nc, arch=arch, nc_arch=nc_arch, device="cpu", class_names=class_names)
        names, num_classes = pair.baseline.meta.class_names, pair.baseline.meta.num_classes
    if not names:
        click.echo(f"note: the models carry no class names: --target takes an index 0..{num_classes - 1}; "
                   f"name them with --class-names FILE", err=True)
    for line in class_lines(names, num_classes):
        click.echo(line)
