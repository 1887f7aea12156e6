"""`ncviz evaluate`: accuracy, localisation and diversity of both models, side by side."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .options import model_options


@click.command("evaluate")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Also write the numbers to this JSON file.")
@click.option("--top", "top_k", type=click.IntRange(2, 64), default=8, show_default=True,
              help="Neurons per image for the diversity numbers.")
@click.option("--fraction", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Instance coverage: share of the map's maximum an instance must reach.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@model_options
def command(data_dir: str, json_path: str | None, top_k: int, fraction: float, limit: int | None,
            **params) -> None:
    """Score both models on a data set written by `ncviz make-data`.

    Example: ncviz make-data heldout --seed 7 && ncviz evaluate heldout --json scores.json
    """
    from ..api import load_model_pair
    from ..evaluate import evaluate_pair, markdown_table
    from ..io import atomic_write_bytes
    from ..io import check_writable
    from .options import model_kwargs

    if json_path:
        from ..safety import check_evaluate_output

        check_evaluate_output(Path(json_path), model_kwargs(params), Path(data_dir))
        check_writable(json_path)
    pair = load_model_pair(**model_kwargs(params))
    result = evaluate_pair(pair, Path(data_dir), top_k=top_k, batch_size=params["batch_size"],
                           coverage_fraction=fraction, limit=limit)
    click.echo(markdown_table(result))
    if json_path:
        payload = {"data": str(data_dir), "top_k": top_k, "coverage_fraction": fraction,
                   "target": "ground-truth class", **result}
        atomic_write_bytes(json_path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
        click.echo(f"wrote {json_path}")
