"""What `ncviz evaluate` prints and writes: the side-by-side table with paired intervals, and a
report folder (report.md, report.tex, report.json, records.csv, the per-image threshold outcomes, and the
BoxAcc-vs-threshold and differences plots). No computation beyond formatting; no click.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ...core.finite import SUMMARY_KEY
from ...core.io import atomic_write_bytes
from ...core.names import json_safe
from ...core.roles import ROLES
from ...metrics.bootstrap import MIN_IMAGES_FOR_CLAIM, verdict
from ...metrics.specs import METRICS, percent_keys, table_labels
from .per_class import per_class_md
from .tables import claims, coarse_map_note, comparison_table, paper_reference, reference_md, report_tex

__all__ = ["METRIC_LABELS", "REPORT_FILES", "comparison_table", "report_json", "write_report"]

REPORT_FILES = ("report.json", "report.md", "report.tex", "records.csv", "box_correctness.npz", "boxacc_vs_threshold.png",
                "boxacc_vs_threshold.pdf", "differences.png", "deletion_insertion.png", "deletion_insertion.pdf")

METRIC_LABELS = table_labels()   # result key -> label, the table's order: metrics.specs, importable from here


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
        "claims": claims(evaluation),
        "claim_rule": {"min_images": MIN_IMAGES_FOR_CLAIM, "level": 0.95,
                       "text": f"a difference is claimed only where its paired interval excludes 0 over at least "
                               f"{MIN_IMAGES_FOR_CLAIM} images; its sign and the metric's better direction say "
                               f"whether NC is better or worse"},
        "per_class": getattr(evaluation, "per_class", {}),
        **({"reference": paper_reference(context)} if paper_reference(context) else {}),
        **({"notes": [coarse_map_note(evaluation)]} if coarse_map_note(evaluation) else {}),
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
        comparison_table(evaluation, namer, protocol),
        "",
        _intervals_md(evaluation, context, protocol, namer),
        "",
    ]
    note = coarse_map_note(evaluation)
    lines += [note, ""] if note else []
    for role in ROLES:
        taus = evaluation.results[role].get("best_tau_by_delta")
        if taus:
            shown = ", ".join(f"{delta}: {tau:.3f}" for delta, tau in taus.items())
            lines.append(f"- {role}: best tau by IoU delta {shown}; MaxBoxAcc's {evaluation.results[role]['best_tau_v1']:.3f}")
    for section in (reference_md(evaluation, context),
                    per_class_md(getattr(evaluation, "per_class", {}))):
        lines += ["", section] if section else []
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
            f"seed {protocol.get('seed')}); n: the images an interval is over (an image where a metric is "
            f"undefined for either model is left out of it). `*` and a verdict (NC better / NC worse, in the "
            f"metric's better direction) only where the interval excludes 0 over at least {MIN_IMAGES_FOR_CLAIM} "
            f"images: below that a bootstrap interval is too narrow to mean anything, so no claim is made. "
            f"The per-IoU BoxAcc rows have no interval of their own (MaxBoxAccV2's is of their mean). MaxBoxAcc and MaxBoxAccV2 choose "
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


DIFFERENCE_COLOURS = {"nc_better": "tab:blue", "nc_worse": "tab:orange"}   # any other verdict: grey
_VERDICT_LEGEND = (("nc_better", "NC better"), ("nc_worse", "NC worse"),
                   (None, f"no clear difference (or n < {MIN_IMAGES_FOR_CLAIM})"))


def differences_figure(evaluation: Any) -> Any:
    """Each metric's NC − baseline with its 95% paired interval: one panel for the metrics in
    percent (box accuracies), one for the others (shares, rates, correlations), each on its own
    axis. The point is blue where NC is better, orange where it is worse (in the metric's better
    direction, the interval excluding 0 over at least 30 images), grey otherwise; each label
    says which direction is better."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    labels, percent = table_labels(), percent_keys()
    keys = [k for k in labels if k in evaluation.intervals]
    groups = [g for g in ([k for k in keys if k in percent], [k for k in keys if k not in percent]) if g]
    units = {True: "percentage points", False: "shares, rates, correlations"}
    figure = Figure(figsize=(6.4, 0.45 * len(keys) + 1.2 * len(groups) + 0.4))
    axes = figure.subplots(len(groups), 1, squeeze=False,
                           gridspec_kw={"height_ratios": [len(g) for g in groups]})[:, 0]
    for ax, group in zip(axes, groups):
        for y, key in enumerate(group):
            interval = evaluation.intervals[key]
            colour = DIFFERENCE_COLOURS.get(verdict(interval, METRICS[key].better), "0.55")
            ax.plot([interval.low, interval.high], [y, y], "-", color="0.3")
            ax.plot([interval.diff], [y], "o", color=colour, gid=f"difference:{key}")
        ax.axvline(0.0, color="0.6", linewidth=0.8)
        ticks = [f"{labels[k]} [{METRICS[k].better} is better]" if METRICS[k].better else labels[k] for k in group]
        ax.set_yticks(range(len(group)), ticks, fontsize=7)
        ax.set_ylim(len(group) - 0.5, -0.5)
        ax.set_xlabel(f"NC − baseline, {units[group[0] in percent]} (95% paired interval)", fontsize=8)
    handles = [Line2D([], [], marker="o", linestyle="", color=DIFFERENCE_COLOURS.get(v or "", "0.55"), label=text)
               for v, text in _VERDICT_LEGEND]
    axes[0].legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    figure.tight_layout()
    return figure


def write_report(folder: Path, evaluation: Any, context: Mapping[str, Any],
                 namer: Callable[[str], str] = str) -> list[Path]:
    """report.md, report.tex, report.json, box_correctness.npz and the plots (records.csv is streamed there
    by the run itself); every file written atomically. Returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(report_json(evaluation, context), indent=2, sort_keys=True, allow_nan=False) + "\n"
    written = [atomic_write_bytes(folder / "report.json", payload.encode("utf-8")),
               atomic_write_bytes(folder / "report.md", _report_md(evaluation, context, namer).encode("utf-8")),
               atomic_write_bytes(folder / "report.tex", report_tex(evaluation, context, namer).encode("utf-8"))]
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
