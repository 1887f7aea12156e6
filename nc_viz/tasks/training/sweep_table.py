"""The sweep's outputs from its table (`sweep.build_table`): table.json, table.md, table.tex
(booktabs, for a paper's `\\input`) and accuracy_vs_alpha.png/.pdf.

The paper's column appears only when the table has a `paper_source` (CIFAR-100, ResNet-20);
a row of one seed has no spread, shown as an en dash, never as a zero.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ...core.io import atomic_write_bytes
from ...core.latex import booktabs_table, escape

TABLE_MD, TABLE_TEX, TABLE_JSON, PLOT_STEM = "table.md", "table.tex", "table.json", "accuracy_vs_alpha"
DASH = "\u2013"


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_table(out: Path, table: dict) -> None:
    """table.json, table.md and table.tex."""
    atomic_write_bytes(out / TABLE_JSON, json_bytes(table))
    atomic_write_bytes(out / TABLE_MD, render_markdown(table).encode("utf-8"))
    atomic_write_bytes(out / TABLE_TEX, render_latex(table).encode("utf-8"))


def _title(table: dict) -> tuple[str, str]:
    """The heading and the line that says what the numbers are."""
    s = table["settings"]
    data = "CIFAR-100" if s["data"] == "cifar100" else f"synthetic shapes ({s.get('train_count')} training images)"
    seeds = ", ".join(str(seed) for seed in s["seeds"])
    note = (f"Test accuracy (%), mean \u00b1 sample std over the seeds ({DASH} for a single seed); "
            f"{s['recipe']['epochs']} epochs; seeds {seeds}.")
    if table.get("paper_source"):
        note += f" Paper: {table['paper_source']}."
    return f"{s['arch']} with NC blocks, by reduction ratio \u03b1: {data}", note


def _cells(table: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows as plain text (UTF-8), the paper's column only where it applies."""
    paper = bool(table.get("paper_source"))
    header = ["model", "\u03b1", "seeds", "accuracy (%)"] + ["paper (%)"] * paper + ["parameters", "MFLOPs / image"]
    rows = []
    for row in table["rows"]:
        spread = DASH if row["accuracy_std"] is None else f"{row['accuracy_std']:.2f}"
        cells = [row["variant"], DASH if row["alpha"] is None else str(row["alpha"]), str(row["seeds"]),
                 f"{row['accuracy_mean']:.2f} \u00b1 {spread}"]
        if paper:
            cells.append(DASH if row["paper"] is None else f"{row['paper']:.2f}")
        rows.append(cells + [f"{row['params']:,}", f"{row['flops'] / 1e6:.2f}"])
    return header, rows


def render_markdown(table: dict) -> str:
    """The table as Markdown."""
    title, note = _title(table)
    header, rows = _cells(table)
    lines = [f"# {title}", "", note, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def render_latex(table: dict) -> str:
    """The same rows as a booktabs table (needs `\\usepackage{booktabs}`); every cell escaped."""
    title, note = _title(table)
    header, rows = _cells(table)
    align = "ll" + "r" * (len(header) - 2)
    body = booktabs_table([escape(h) for h in header], [[escape(c) for c in cells] for cells in rows], align,
                          caption=f"{escape(title)}. {escape(note)}", label="tab:ncviz-sweep")
    tag = escape(table["settings"]["tag"])
    return f"% ncviz sweep, tag {tag}: \\input it after \\usepackage{{booktabs}}\n" + body


def write_plot(out: Path, table: dict) -> None:
    """accuracy_vs_alpha.png and .pdf: NC accuracy against alpha with error bars, the baseline as a line."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    nc = [r for r in table["rows"] if r["alpha"] is not None]
    base = next((r for r in table["rows"] if r["alpha"] is None), None)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    if nc:
        ax.errorbar([r["alpha"] for r in nc], [r["accuracy_mean"] for r in nc],
                    yerr=[r["accuracy_std"] or 0.0 for r in nc], marker="o", capsize=4,
                    label=f"{table['settings']['arch']}_nc (ours)")
    if base is not None:
        ax.axhline(base["accuracy_mean"], color="grey", linestyle="--", label="baseline (ours)")
        if base["accuracy_std"]:
            ax.axhspan(base["accuracy_mean"] - base["accuracy_std"], base["accuracy_mean"] + base["accuracy_std"],
                       color="grey", alpha=0.15)
    paper = [r for r in nc if r["paper"] is not None]
    if paper:
        ax.plot([r["alpha"] for r in paper], [r["paper"] for r in paper], "s:", color="tab:red",
                label="paper, Table 1 (CIFAR-100)")
    ax.set_xscale("log", base=2)
    if nc:
        ax.set_xticks([r["alpha"] for r in nc], [str(r["alpha"]) for r in nc])
    ax.set_xlabel("reduction ratio alpha")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    for suffix, metadata in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        atomic_write_bytes(out / f"{PLOT_STEM}{suffix}", _figure_bytes(fig, suffix[1:], metadata))


def _figure_bytes(fig: Any, fmt: str, metadata: dict) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
    return buffer.getvalue()
