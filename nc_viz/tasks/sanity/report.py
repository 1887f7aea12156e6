"""What `ncviz sanity` prints and writes: per measure, a table with one row per step (mean
similarity of each model, NC minus baseline with its paired bootstrap interval over images), the
per-image records, report.json, and the figures (similarity-vs-step curves of both models, the
maps of a few images after each step). Formatting only; no click.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ...core.io import atomic_write, atomic_write_bytes
from ...core.roles import ROLES
from ...metrics.bootstrap import MIN_IMAGES_FOR_CLAIM, Interval, paired_bootstrap_mean, verdict
from ...metrics.similarity import SIMILARITIES
from ..evaluate.records import csv_line
from .run import SanityResult

__all__ = ["REPORT_FILES", "comparison_tables", "intervals", "report_json", "write_records", "write_report"]

REPORT_FILES = ("report.md", "report.json", "records.csv", "similarity_curves.png", "similarity_curves.pdf",
                "maps.png")
ROLE_LABELS = {"baseline": "baseline", "nc": "NC"}
MAX_FIGURE_STEPS = 24   # the maps figure shows at most this many steps (evenly spaced, the last included)


def _mean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def intervals(result: SanityResult, bootstrap: int, seed: int) -> dict[str, list[Interval | None]]:
    """Measure -> per step, NC minus baseline over the images with its paired bootstrap interval
    (None with `bootstrap` 0)."""
    if not bootstrap:
        return {m: [None] * len(result.steps) for m in SIMILARITIES}
    return {m: [paired_bootstrap_mean(result.similarity["baseline"][m][:, k], result.similarity["nc"][m][:, k],
                                      n=bootstrap, seed=seed) for k in range(len(result.steps))]
            for m in SIMILARITIES}


def _number(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def comparison_tables(result: SanityResult, found: Mapping[str, list[Interval | None]],
                      namer: Callable[[str], str] = str) -> str:
    """Markdown, one table per measure: step | randomised | baseline | NC | NC − baseline | 95% interval."""
    blocks = []
    for measure, label in SIMILARITIES.items():
        lines = [f"{label}, mean over images",
                 "", "| step | randomised | n | baseline | NC | NC − baseline | 95% interval |",
                 "|---:|---|---:|---:|---:|---:|---|"]
        for k, step in enumerate(result.steps):
            base, nc = (_mean(result.similarity[role][measure][:, k]) for role in ROLES)
            interval = found[measure][k]
            where = f"{step.name} (NC block)" if step.nc else step.name
            if interval is None or interval.n_images == 0:
                reason = f"({namer('bootstrap')} 0)" if interval is None else "(no pair of values)"
                diff = nc - base if not (math.isnan(base) or math.isnan(nc)) else math.nan
                lines.append(f"| {k + 1} | {where} |  | {_number(base)} | {_number(nc)} | {_number(diff)} | {reason} |")
                continue
            mark = " *" if verdict(interval, None) == "differs" else ""  # no claim under MIN_IMAGES_FOR_CLAIM
            lines.append(f"| {k + 1} | {where} | {interval.n_images} | {_number(base)} | {_number(nc)} | "
                         f"{_number(interval.diff)}{mark} | "
                         f"[{_number(interval.low)}, {_number(interval.high)}] |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + f"\n\nimages: {result.images}" + (f", {len(result.failed)} failed" if result.failed
                                                                   else "")


def report_json(result: SanityResult, found: Mapping[str, list[Interval | None]],
                context: Mapping[str, Any]) -> dict[str, Any]:
    """report.json: the settings, and per step its layers and each measure's numbers."""
    steps = []
    for k, step in enumerate(result.steps):
        measures = {}
        for m in SIMILARITIES:
            values = {role: result.similarity[role][m][:, k] for role in ROLES}
            interval = found[m][k]
            measures[m] = {**{role: _finite(_mean(v)) for role, v in values.items()},
                           "undefined": {role: int(np.isnan(v).sum()) for role, v in values.items()},
                           "interval": None if interval is None else {key: _finite(v) if isinstance(v, float) else v
                                                                      for key, v in interval.as_dict().items()}}
        steps.append({"index": k + 1, "name": step.name, "nc_block": step.nc,
                      "layers": {role: list(step.layers[role]) for role in ROLES}, "measures": measures})
    return {**context, "images": result.images, "failed": [{"path": p, "reason": r} for p, r in result.failed],
            "measures": dict(SIMILARITIES), "steps": steps}


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def write_records(path: Path, result: SanityResult) -> Path:
    """records.csv: one row per image, step and model: the class explained and every measure."""
    def write(f: Any) -> None:
        f.write(csv_line(["image_id", "step", "step_name", "nc_block", "role", "class", *SIMILARITIES]).encode())
        for i, image_id in enumerate(result.image_ids):
            for k, step in enumerate(result.steps):
                for role in ROLES:
                    cells = [image_id, str(k + 1), step.name, "1" if step.nc else "0", role,
                             str(int(result.targets[role][i]))]
                    cells += [repr(float(result.similarity[role][m][i, k])) for m in SIMILARITIES]
                    f.write(csv_line(cells).encode("utf-8", "surrogateescape"))
    return atomic_write(path, write)


def _savefig(figure: Any, fmt: str) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        figure.savefig(buffer, format=fmt, metadata=metadata, dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def curves_figure(result: SanityResult, mode: str) -> Any:
    """Mean similarity against step, both models, one panel per measure (the paper's Fig. 2
    layout); the band is one standard deviation over images."""
    from matplotlib.figure import Figure

    names = ["original"] + [f"{s.name} (NC)" if s.nc else s.name for s in result.steps]
    x = np.arange(len(names))
    figure = Figure(figsize=(max(8.0, 0.32 * len(names) * 2), 3.6), layout="constrained")
    axes = figure.subplots(1, len(SIMILARITIES), sharey=True)
    for ax, (measure, label) in zip(axes, SIMILARITIES.items()):
        for role, colour in zip(ROLES, ("tab:blue", "tab:orange")):
            values = result.similarity[role][measure]
            kept = [v[~np.isnan(v)] for v in values.T]
            mean = np.array([1.0] + [v.mean() if v.size else np.nan for v in kept])
            std = np.array([0.0] + [v.std() if v.size else np.nan for v in kept])
            ax.plot(x, mean, "o-", ms=3, lw=1.2, color=colour, label=ROLE_LABELS[role])
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_title(label, fontsize=9)
        ax.set_xticks(x, names, rotation=90, fontsize=6)
        ax.set_ylim(-1.05, 1.05)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel(f"similarity to the original map ({mode})", fontsize=8)
    axes[-1].legend(fontsize=7, loc="lower left")
    return figure


def _shown_steps(count: int) -> list[int]:
    """Columns of the maps figure: the original (0) and at most MAX_FIGURE_STEPS steps."""
    if count <= MAX_FIGURE_STEPS:
        return list(range(count + 1))
    return [0] + sorted({int(round(v)) for v in np.linspace(1, count, MAX_FIGURE_STEPS)})


def maps_figure(result: SanityResult, cmap: str = "jet") -> Any:
    """The maps of the first images after each step: per image a baseline row and an NC row,
    each map min-max normalised on its own (as `compare` draws with scale panel)."""
    from matplotlib.figure import Figure

    columns = _shown_steps(len(result.steps))
    images = len(result.figure_pictures)
    rows = 2 * images
    figure = Figure(figsize=(0.9 * (len(columns) + 1), 0.95 * rows + 0.6), layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, len(columns) + 1, squeeze=False))
    for i in range(images):
        for r, role in enumerate(ROLES):
            row = axes[2 * i + r]
            row[0].imshow(result.figure_pictures[i])
            row[0].set_ylabel(ROLE_LABELS[role], fontsize=7)
            for c, k in enumerate(columns, start=1):
                cam = result.figure_maps[role][i, k]
                span = float(cam.max() - cam.min())
                row[c].imshow((cam - cam.min()) / span if span > 0 else np.zeros_like(cam), cmap=cmap, vmin=0, vmax=1)
                if i == 0 and r == 0:
                    title = "original" if k == 0 else result.steps[k - 1].name
                    row[c].set_title(title, fontsize=6, rotation=90)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


def write_report(folder: Path, result: SanityResult, found: Mapping[str, list[Interval | None]],
                 context: Mapping[str, Any], records: Path, namer: Callable[[str], str] = str) -> list[Path]:
    """The report folder: report.md, report.json, records.csv (or `records`), the figures."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    written = [write_records(records, result)]
    md = (f"# Model parameter randomisation ({context['protocol']['mode']}, {context['protocol']['method']})\n\n"
          f"{context['protocol']['description']}\n\n{comparison_tables(result, found, namer)}\n\n"
          f"Intervals: 95% paired percentile bootstrap over images ({context['protocol']['bootstrap']} resamples, "
          f"seed {context['protocol']['seed']}); `*`: the interval excludes 0 over at least "
          f"{MIN_IMAGES_FOR_CLAIM} paired images (n; below that no interval is marked).\n")
    written.append(atomic_write_bytes(folder / "report.md", md.encode("utf-8")))
    text = json.dumps(report_json(result, found, context), indent=2, sort_keys=True, allow_nan=False) + "\n"
    written.append(atomic_write_bytes(folder / "report.json", text.encode("utf-8")))
    curves = curves_figure(result, context["protocol"]["mode"])
    for fmt in ("png", "pdf"):
        written.append(atomic_write_bytes(folder / f"similarity_curves.{fmt}", _savefig(curves, fmt)))
    if len(result.figure_pictures):
        written.append(atomic_write_bytes(folder / "maps.png", _savefig(maps_figure(result), "png")))
    return written
