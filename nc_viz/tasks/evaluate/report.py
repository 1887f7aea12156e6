"""What `ncviz evaluate` prints and writes: the side-by-side table with paired intervals, and a
report folder (report.md, report.json, records.csv, the per-image threshold outcomes, and the
BoxAcc-vs-threshold and differences plots). No computation beyond formatting; no click.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ...core.finite import SUMMARY_KEY
from ...core.io import atomic_write_bytes
from ...core.names import json_safe
from ...core.roles import ROLES
from ...metrics.specs import METRICS, percent_keys, table_labels

__all__ = ["METRIC_LABELS", "REPORT_FILES", "comparison_table", "report_json", "write_report"]

REPORT_FILES = ("report.json", "report.md", "records.csv", "box_correctness.npz", "boxacc_vs_threshold.png",
                "boxacc_vs_threshold.pdf", "differences.png", "deletion_insertion.png", "deletion_insertion.pdf")

METRIC_LABELS = table_labels()   # result key -> label, the table's order: metrics.specs, importable from here


def _number(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def comparison_table(evaluation: Any, namer: Callable[[str], str] = str) -> str:
    """Markdown: metric | baseline | NC | NC − baseline | 95% paired interval; `*` where it excludes 0.
    `namer` spells a parameter's name (the CLI's gives its flag)."""
    lines = ["| metric | baseline | NC | NC − baseline | 95% interval |", "|---|---:|---:|---:|---|"]
    missing = "(no per-image values)" if getattr(evaluation, "bootstrap", 1) else f"({namer('bootstrap')} 0)"
    if getattr(evaluation, "has_non_finite", False):
        missing = "(none: outputs not finite)"
    for key, label in table_labels().items():
        base, nc = evaluation.results["baseline"].get(key), evaluation.results["nc"].get(key)
        if base is None and nc is None:
            continue
        digits = METRICS[key].digits
        interval = evaluation.intervals.get(key)
        if interval is None:
            diff = None if base is None or nc is None else nc - base
            lines.append(f"| {label} | {_number(base, digits)} | {_number(nc, digits)} | {_number(diff, digits)} | "
                         f"{missing} |")
            continue
        mark = " *" if interval.excludes_zero else ""
        lines.append(f"| {label} | {_number(base, digits)} | {_number(nc, digits)} | "
                     f"{_number(interval.diff, digits)}{mark} | "
                     f"[{_number(interval.low, digits)}, {_number(interval.high, digits)}] |")
    boxed = evaluation.results["baseline"].get("boxed_images")
    lines.append(f"| images scored{' (with boxes)' if boxed is not None else ''} | {evaluation.images}"
                 f"{f' ({boxed})' if boxed is not None else ''} | | | |")
    return "\n".join(lines)


def report_json(evaluation: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """The report's JSON: `context` (provenance, data set, protocol settings), results, intervals."""
    return json_safe({
        "schema": "ncviz.evaluate/2",
        **context,
        "images": evaluation.images,
        "failed": [{"path": p, "reason": r} for p, r in evaluation.failed],
        "results": evaluation.results,
        "intervals": {k: v.as_dict() for k, v in evaluation.intervals.items()},
        "boxacc_curves": evaluation.curves,
        "faithfulness_curves": getattr(evaluation, "faithfulness_curves", {}),
        **({SUMMARY_KEY: evaluation.non_finite} if getattr(evaluation, "has_non_finite", False) else {}),
    })


def _report_md(evaluation: Any, context: Mapping[str, Any], namer: Callable[[str], str] = str) -> str:
    data = context.get("data", {})
    protocol = context.get("protocol", {})
    lines = [
        "# ncviz evaluate",
        "",
        f"Data: `{data.get('path')}` ({data.get('format')}, {evaluation.images} images scored, "
        f"{len(evaluation.failed)} failed, {data.get('problems', 0)} annotation problems).",
        f"Protocol: {protocol.get('description', '')}",
        "",
        comparison_table(evaluation, namer),
        "",
        _intervals_md(evaluation, context, protocol, namer),
        "",
    ]
    for role in ROLES:
        taus = evaluation.results[role].get("best_tau_by_delta")
        if taus:
            shown = ", ".join(f"{delta}: {tau:.3f}" for delta, tau in taus.items())
            lines.append(f"- {role}: best tau by IoU delta {shown}; MaxBoxAcc's {evaluation.results[role]['best_tau_v1']:.3f}")
    return "\n".join(lines) + "\n"


def _intervals_md(evaluation: Any, context: Mapping[str, Any], protocol: Mapping[str, Any],
                  namer: Callable[[str], str] = str) -> str:
    """report.md's paragraph on what the intervals are (or that they are off)."""
    files = (f"Per-image values: `{context.get('records') or 'records.csv'}`; per-image threshold outcomes: "
             "`box_correctness.npz`.")
    if getattr(evaluation, "has_non_finite", False):
        counts = ", ".join(f"{role} {n}" for role, n in evaluation.non_finite.items() if n)
        return (f"Intervals: none. A model's outputs were not finite (NaN or infinite: check its weights) for "
                f"some images ({counts}), so no difference is claimed. {files}")
    if not getattr(evaluation, "bootstrap", 1):
        return f"Intervals: off (`{namer('bootstrap')} 0`). {files}"
    return (f"Intervals: 95% paired percentile bootstrap over images ({protocol.get('bootstrap')} resamples, "
            f"seed {protocol.get('seed')}); `*`: the interval excludes 0. MaxBoxAcc and MaxBoxAccV2 choose "
            f"their best threshold again inside every resample; PxAP is recomputed inside every resample "
            f"from the pixel histograms of the images drawn. {files}")


def _savefig(figure: Any, fmt: str) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    metadata = {"CreationDate": None} if fmt == "pdf" else ({"Software": None} if fmt == "png" else {})
    with matplotlib.rc_context({"pdf.fonttype": 42, "svg.hashsalt": "ncviz"}):
        figure.savefig(buffer, format=fmt, metadata=metadata, dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def boxacc_figure(evaluation: Any) -> Any:
    """BoxAcc against tau for each delta (V2, all boxes), both models, best tau marked."""
    from matplotlib.figure import Figure

    from ...metrics.wsol import IOU_DELTAS, THRESHOLDS

    figure = Figure(figsize=(6.4, 4.0))
    ax = figure.add_subplot()
    styles = {"baseline": "--", "nc": "-"}
    for role, curves in evaluation.curves.items():
        for delta in IOU_DELTAS:
            curve = np.asarray(curves["v2"][f"{delta:.1f}"])
            line, = ax.plot(THRESHOLDS, curve, styles[role], label=f"{role}, delta {delta}")
            best = int(np.argmax(curve))
            ax.plot(THRESHOLDS[best], curve[best], "o", color=line.get_color())
    ax.set_xlabel("threshold tau (share of the map's maximum)")
    ax.set_ylabel("BoxAcc (%)")
    ax.legend(fontsize=7, ncol=2)
    return figure


def deletion_insertion_figure(curves: Mapping[str, Mapping[str, list[float]]]) -> Any:
    """The mean deletion and insertion curves of both models: the explained class's probability
    against the fraction of pixels changed."""
    from matplotlib.figure import Figure

    names = sorted({name for by_name in curves.values() for name in by_name})
    figure = Figure(figsize=(3.4 * len(names), 3.0))
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        for role, style in (("baseline", "--"), ("nc", "-")):
            curve = np.asarray(curves.get(role, {}).get(name, []))
            if curve.size:
                ax.plot(np.linspace(0.0, 1.0, curve.size), curve, style, label=role)
        ax.set_title(name.replace("_curve", "") + " (mean over images)", fontsize=9)
        ax.set_xlabel("fraction of pixels changed", fontsize=8)
        ax.set_ylabel("probability of the explained class", fontsize=8)
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def differences_figure(evaluation: Any) -> Any:
    """Each metric's NC − baseline with its 95% paired interval: one panel for the metrics in
    percent (box accuracies), one for the others (shares, rates, correlations), each on its own axis."""
    from matplotlib.figure import Figure

    labels, percent = table_labels(), percent_keys()
    keys = [k for k in labels if k in evaluation.intervals]
    groups = [g for g in ([k for k in keys if k in percent], [k for k in keys if k not in percent]) if g]
    units = {True: "percentage points", False: "shares, rates, correlations"}
    figure = Figure(figsize=(6.4, 0.45 * len(keys) + 1.2 * len(groups)))
    axes = figure.subplots(len(groups), 1, squeeze=False,
                           gridspec_kw={"height_ratios": [len(g) for g in groups]})[:, 0]
    for ax, group in zip(axes, groups):
        for y, key in enumerate(group):
            interval = evaluation.intervals[key]
            ax.plot([interval.low, interval.high], [y, y], "-", color="0.3")
            ax.plot([interval.diff], [y], "o", color="tab:red" if interval.excludes_zero else "0.3")
        ax.axvline(0.0, color="0.6", linewidth=0.8)
        ax.set_yticks(range(len(group)), [labels[k] for k in group], fontsize=7)
        ax.set_ylim(len(group) - 0.5, -0.5)
        ax.set_xlabel(f"NC − baseline, {units[group[0] in percent]} (95% paired interval; red: excludes 0)",
                      fontsize=8)
    figure.tight_layout()
    return figure


def write_report(folder: Path, evaluation: Any, context: Mapping[str, Any],
                 namer: Callable[[str], str] = str) -> list[Path]:
    """report.md, report.json, box_correctness.npz and the plots (records.csv is streamed there
    by the run itself); every file written atomically. Returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(report_json(evaluation, context), indent=2, sort_keys=True, allow_nan=False) + "\n"
    written = [atomic_write_bytes(folder / "report.json", payload.encode("utf-8")),
               atomic_write_bytes(folder / "report.md", _report_md(evaluation, context, namer).encode("utf-8"))]
    if evaluation.correctness:
        buffer = io.BytesIO()
        np.savez(buffer, image_ids=np.array(evaluation.boxed_ids),
                 **{f"{role}_{kind}": arr for role, kinds in evaluation.correctness.items() for kind, arr in kinds.items()})
        written.append(atomic_write_bytes(folder / "box_correctness.npz", buffer.getvalue()))
        figure = boxacc_figure(evaluation)
        for fmt in ("png", "pdf"):
            written.append(atomic_write_bytes(folder / f"boxacc_vs_threshold.{fmt}", _savefig(figure, fmt)))
    if evaluation.intervals:
        written.append(atomic_write_bytes(folder / "differences.png", _savefig(differences_figure(evaluation), "png")))
    curves = getattr(evaluation, "faithfulness_curves", {})
    if curves:
        figure = deletion_insertion_figure(curves)
        for fmt in ("png", "pdf"):
            written.append(atomic_write_bytes(folder / f"deletion_insertion.{fmt}", _savefig(figure, fmt)))
    return written
