"""The comparison table of `evaluate`, once as rows and twice as text: Markdown (the terminal and
report.md) and LaTeX (report.tex, booktabs). Each number is printed with its metric's fixed
decimals (`MetricSpec.places`); each row says which direction is better, over how many images
its interval is, and what the interval supports (`metrics.bootstrap.verdict`: nothing below 30
images). Also the notes under the table: GT-known / Top-1 Loc at zero because tau = 0.2 does not
suit the maps, and the published CAM number of the wsolevaluation paper on ImageNet and CUB.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable, Mapping

from ...core.latex import booktabs, escape
from ...metrics.bootstrap import MIN_IMAGES_FOR_CLAIM, verdict
from ...metrics.specs import METRICS, table_labels
from ...metrics.wsol import IOU_DELTAS, pointing_tolerance

__all__ = ["TableRow", "table_rows", "comparison_table", "claims", "coarse_map_note", "paper_reference",
           "reference_md", "report_tex"]

VERDICT_TEXT = {"nc_better": "NC better", "nc_worse": "NC worse", "differs": "differs",
                "no_clear_difference": "no clear difference", "too_few_images": f"no claim (n < {MIN_IMAGES_FOR_CLAIM})"}
HEADER = ("metric", "better", "n", "baseline", "NC", "NC − baseline", "95% interval", "verdict")
TEX_VERDICT = {"nc_better": "better", "nc_worse": "worse", "differs": "differs", "no_clear_difference": "--",
               "too_few_images": f"n<{MIN_IMAGES_FOR_CLAIM}"}
COARSE = "\u2020"   # the mark of the rows the coarse-map note is about


@dataclass(frozen=True)
class TableRow:
    """One row: a metric's two numbers, the difference and its interval, at `places` decimals."""

    key: str
    label: str
    better: str | None
    n: int | None             # images the interval (or, without one, the number) is over; None: not known
    base: float | None
    nc: float | None
    diff: float | None
    low: float | None = None
    high: float | None = None
    places: int = 3
    verdict: str | None = None   # metrics.bootstrap.VERDICTS; None: no interval
    missing: str = ""            # the interval cell's text when there is no interval


def number(value: Any, places: int, signed: bool = False) -> str:
    """`value` at `places` decimals ("n/a" for None or NaN; no "-0.0"; "+" on request)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{float(value):.{places}f}"
    if float(text) == 0.0:
        return text.lstrip("-")
    return f"+{text}" if signed and not text.startswith("-") else text


def _missing(evaluation: Any, namer: Callable[[str], str]) -> str:
    if getattr(evaluation, "has_non_finite", False):
        return "(none: outputs not finite)"
    return "(no per-image values)" if getattr(evaluation, "bootstrap", 1) else f"({namer('bootstrap')} 0)"


def _tolerance(protocol: Mapping[str, Any] | None) -> str:
    if not protocol:
        return ""
    tolerance = protocol.get("pointing_tolerance")
    if tolerance is None and protocol.get("input_size"):
        tolerance = pointing_tolerance(int(protocol["input_size"]))
    return "" if tolerance is None else f", tolerance {float(tolerance):.1f} px"


def coarse_models(evaluation: Any) -> list[str]:
    """The models whose GT-known Loc is 0 while their MaxBoxAcc is above 0: at the CAM paper's
    fixed tau = 0.2 no box reaches IoU 0.5, at the best tau some do (`coarse_map_note`)."""
    out = []
    for role, results in evaluation.results.items():
        gt, best = results.get("gt_known_loc"), results.get("max_box_acc")
        if gt is not None and best is not None and not math.isnan(gt) and gt == 0.0 and best > 0.0:
            out.append(role)
    return out


def table_rows(evaluation: Any, protocol: Mapping[str, Any] | None = None,
               namer: Callable[[str], str] = str) -> list[TableRow]:
    """The table's rows in the metric table's order, each IoU level of MaxBoxAccV2 after it."""
    rows: list[TableRow] = []
    missing = _missing(evaluation, namer)
    coarse = coarse_models(evaluation)
    base_results, nc_results = evaluation.results["baseline"], evaluation.results["nc"]
    boxed = base_results.get("boxed_images")
    for key, label in table_labels().items():
        base, nc = base_results.get(key), nc_results.get(key)
        if base is None and nc is None:
            continue
        spec = METRICS[key]
        if key == "pointing_game":
            label += _tolerance(protocol)
        if key in ("gt_known_loc", "top1_loc") and coarse:
            label += f" {COARSE}"
        interval = evaluation.intervals.get(key)
        if interval is not None:
            rows.append(TableRow(key, label, spec.better, interval.n_images, base, nc, interval.diff, interval.low,
                                 interval.high, spec.places, verdict(interval, spec.better)))
        else:
            n = boxed if key in ("max_box_acc", "max_box_acc_v2") else None
            diff = None if base is None or nc is None else nc - base
            rows.append(TableRow(key, label, spec.better, n, base, nc, diff, places=spec.places, missing=missing))
        if key == "max_box_acc_v2":
            rows += _by_delta_rows(base_results, nc_results, boxed, spec.places)
    return rows


def _by_delta_rows(base_results: Mapping[str, Any], nc_results: Mapping[str, Any], boxed: int | None,
                   places: int) -> list[TableRow]:
    """BoxAccV2 at each IoU delta, each at its own best tau (the three MaxBoxAccV2 averages)."""
    rows = []
    for delta in IOU_DELTAS:
        key = f"{delta:.1f}"
        base = (base_results.get("box_acc_v2_by_delta") or {}).get(key)
        nc = (nc_results.get("box_acc_v2_by_delta") or {}).get(key)
        if base is None or nc is None:
            continue
        rows.append(TableRow(f"box_acc_v2@{key}", f"  BoxAcc (%, IoU delta {key}, best tau)", "higher", boxed, base,
                             nc, nc - base, places=places, missing="(within MaxBoxAccV2's)"))
    return rows


def _cells(row: TableRow) -> list[str]:
    interval = (f"[{number(row.low, row.places)}, {number(row.high, row.places)}]" if row.verdict is not None
                else row.missing)
    mark = " *" if row.verdict in ("nc_better", "nc_worse", "differs") else ""
    return [row.label, row.better or "", "" if row.n is None else str(row.n), number(row.base, row.places),
            number(row.nc, row.places), number(row.diff, row.places, signed=True) + mark, interval,
            VERDICT_TEXT.get(row.verdict or "", "")]


def _images_cells(evaluation: Any) -> list[str]:
    boxed = evaluation.results["baseline"].get("boxed_images")
    return [f"images scored{' (with boxes)' if boxed is not None else ''}", "",
            f"{evaluation.images}" + (f" ({boxed})" if boxed is not None else ""), "", "", "", "", ""]


def comparison_table(evaluation: Any, namer: Callable[[str], str] = str,
                     protocol: Mapping[str, Any] | None = None) -> str:
    """Markdown: metric | better | n | baseline | NC | NC − baseline | 95% interval | verdict.
    `*` marks a difference whose interval excludes 0 over at least 30 images. `namer` spells a
    parameter's name (the CLI's gives its flag); `protocol` (report.json's) adds the pointing
    game's tolerance (default: the evaluation's own `protocol`, when it has one)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---:|---|---|"]
    protocol = protocol if protocol is not None else getattr(evaluation, "protocol", None)
    for row in table_rows(evaluation, protocol, namer):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    lines.append("| " + " | ".join(_images_cells(evaluation)) + " |")
    return "\n".join(lines)


def claims(evaluation: Any) -> dict[str, dict[str, Any]]:
    """report.json's `claims`: per metric with an interval, its better direction, n and verdict."""
    return {row.key: {"better": row.better, "n": row.n, "verdict": row.verdict}
            for row in table_rows(evaluation) if row.verdict is not None}


def coarse_map_note(evaluation: Any) -> str:
    """The note under the table when a model's GT-known Loc is 0 but its MaxBoxAcc is not (see
    `coarse_models`); empty otherwise."""
    roles = coarse_models(evaluation)
    if not roles:
        return ""
    parts = [f"{role}: MaxBoxAcc {number(evaluation.results[role]['max_box_acc'], 1)}% at tau "
             f"{evaluation.results[role].get('best_tau_v1', math.nan):.3f}" for role in roles]
    return (f"{COARSE} GT-known Loc and Top-1 Loc are 0 for {' and '.join(roles)}: at the CAM paper's fixed "
            f"tau = 0.2 no image's box reaches IoU 0.5, while at the best tau some do ({'; '.join(parts)}). "
            "The part of the map above 20% of its maximum is much larger than the object, as it is for a "
            "coarse map upsampled to the image: for these maps read MaxBoxAcc and MaxBoxAccV2 (best tau). "
            "(Rule: this note is given when a model's GT-known Loc is 0 and its MaxBoxAcc is above 0.)")


# Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020
# (clovaai/wsolevaluation): CAM with a ResNet-50, MaxBoxAccV2 (%), test split.
PAPER_CAM_MAX_BOX_ACC_V2 = {"ImageNet": 63.7, "CUB": 63.0}
_WHO = {"baseline": "baseline", "nc": "NC"}
PAPER = "Choe et al., Evaluating Weakly Supervised Object Localization Methods Right, CVPR 2020"


def paper_dataset(data: Mapping[str, Any]) -> str | None:
    """ImageNet or CUB when the data is read as `imagenet` or `cub`, or is a `wsol` metadata
    folder under the reference's `ILSVRC` or `CUB` folder (by name); else None."""
    fmt = data.get("format")
    if fmt == "imagenet":
        return "ImageNet"
    if fmt == "cub":
        return "CUB"
    if fmt == "wsol" and data.get("path"):
        parts = [p.lower() for p in PurePath(str(data["path"])).parts]
        if "ilsvrc" in parts or "imagenet" in parts:
            return "ImageNet"
        if any(p == "cub" or p.startswith("cub_200") for p in parts):
            return "CUB"
    return None


def paper_reference(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """report.json's `reference`: the paper's CAM number on this data set, marked as a published
    number of other models; None when the data set is neither ImageNet nor CUB."""
    dataset = paper_dataset(context.get("data", {}))
    if dataset is None:
        return None
    return {"dataset": dataset, "metric": "max_box_acc_v2", "method": "CAM", "architecture": "ResNet-50",
            "value": PAPER_CAM_MAX_BOX_ACC_V2[dataset], "source": PAPER,
            "note": "published number of the paper's own models: a reference, not a comparison of the same models"}


def reference_md(evaluation: Any, context: Mapping[str, Any]) -> str:
    """report.md's section beside the published CAM number (empty when there is none)."""
    reference = paper_reference(context)
    if reference is None:
        return ""
    mine = [(role, evaluation.results[role].get("max_box_acc_v2")) for role in ("baseline", "nc")]
    lines = ["## Published reference (not the same models)", "",
             f"| MaxBoxAccV2 (%) on {reference['dataset']} | value |", "|---|---:|"]
    lines += [f"| {_WHO[role]} (these weights) | {number(value, 1)} |" for role, value in mine]
    lines += [f"| reference: CAM, ResNet-50 ({PAPER}) | {reference['value']:.1f} |", "",
              "The reference is the paper's number for its own CAM model (its training, its weights, the full "
              "test split). It places the numbers above; it does not compare the same models. Only the paired "
              "intervals in the table compare the baseline with NC."]
    return "\n".join(lines)


_NUMERIC = re.compile(r"n/a|[-+0-9.,\[\] *]*")


def _tex_number(cell: str) -> str:
    """A number or interval cell with real minus signs; any other cell escaped as text."""
    return escape(cell).replace("-", "$-$") if _NUMERIC.fullmatch(cell) else escape(cell)


def report_tex(evaluation: Any, context: Mapping[str, Any], namer: Callable[[str], str] = str) -> str:
    """report.tex: the comparison table's rows as a booktabs `table` (needs `\\usepackage{booktabs}`),
    the notes in its caption; the reference's number as a second table when there is one."""
    protocol = context.get("protocol", {})
    rows = []
    for row in table_rows(evaluation, protocol, namer):
        cells = _cells(row)
        arrow = {"higher": " \u2191", "lower": " \u2193"}.get(row.better or "", "")
        label = escape(cells[0].strip() + arrow)
        interval = _tex_number(cells[6]) if row.verdict is not None else "--"
        rows.append([("\\quad " if cells[0].startswith(" ") else "") + label, cells[2]]
                    + [_tex_number(c) for c in cells[3:6]] + [interval, escape(TEX_VERDICT.get(row.verdict or "", ""))])
    images = _images_cells(evaluation)
    rows += [["\\midrule"], [escape(images[0]), escape(images[2])] + [""] * 5]
    header = ["metric", "n", "baseline", "NC", "$\\Delta$", "95\\% interval", "verdict"]
    intervals = (f"with its 95\\% paired percentile bootstrap interval over images ({escape(str(protocol.get('bootstrap')))} "
                 f"resamples, seed {escape(str(protocol.get('seed')))})" if evaluation.intervals else "no intervals")
    caption = (f"$\\Delta$: NC $-$ baseline, {intervals}; "
               f"$\\uparrow$/$\\downarrow$: higher/lower is better; n: the images an interval is over; *: the "
               f"interval excludes 0 over at least {MIN_IMAGES_FOR_CLAIM} images, and the verdict says whether NC "
               f"is better or worse; below {MIN_IMAGES_FOR_CLAIM} images no claim is made (n$<${MIN_IMAGES_FOR_CLAIM}). "
               f"The per-IoU BoxAcc rows have no interval of their own (MaxBoxAccV2's is of their mean); "
               f"--: no interval. " + escape(coarse_map_note(evaluation)))
    parts = ["% ncviz evaluate: \\input{report.tex} in a document with \\usepackage{booktabs}",
             "\\begin{table}[t]", "\\centering", "\\small", booktabs(header, rows, ["p{3.8cm}", "r", "r", "r", "r", "l", "l"]).rstrip("\n"),
             f"\\caption{{{caption.strip()}}}", "\\label{tab:ncviz-evaluate}", "\\end{table}"]
    reference = paper_reference(context)
    if reference is not None:
        ref_rows = [[escape(f"{_WHO[role]} (these weights)"), number(evaluation.results[role].get("max_box_acc_v2"), 1)]
                    for role in ("baseline", "nc")]
        ref_rows.append([escape(f"reference: CAM, ResNet-50 ({PAPER})"), f"{reference['value']:.1f}"])
        parts += ["\\begin{table}[t]", "\\centering", "\\small",
                  booktabs([escape(f"MaxBoxAccV2 (%) on {reference['dataset']}"), "value"], ref_rows, "lr").rstrip("\n"),
                  "\\caption{A published number of other models (a reference, not a comparison of the same "
                  "models).}", "\\label{tab:ncviz-reference}", "\\end{table}"]
    return "\n".join(parts) + "\n"
