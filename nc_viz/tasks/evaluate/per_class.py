"""The localisation numbers per true class: for report.json's `per_class` and report.md's section.

Per class and model: the images of the class (with a label), the box accuracy of the class's
boxed images at the data set's best tau of that model for each IoU delta (the tau the table's
MaxBoxAccV2 chose on all images, so that the mean over classes, weighted by their boxed images,
is the table's number; a tau chosen again per class would fit a few images), and the means over
the class's images of the per-image localisation columns of records.csv (GT-known Loc and Top-1
Loc at tau 0.2 and the IoU there, the pointing game, the energy share, the instance coverage),
in the units of the table. Nothing here changes a data-set number.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from ...core.roles import ROLES
from ...metrics.specs import METRICS
from ...metrics.wsol import IOU_DELTAS, THRESHOLDS
from .records import TEXT

__all__ = ["LOCALISATION_KEYS", "name_classes", "per_class_breakdown", "per_class_md"]

LOCALISATION_KEYS = ("gt_known_loc", "top1_loc", "iou_tau_0.2", "pointing_game", "energy", "instance_coverage_multi")
RULE = ("per true class; box_acc_v2 (%): the class's boxed images correct at each model's best tau of the whole "
        "data set per IoU delta (mean over deltas; weighted by boxed images, the classes' numbers average to "
        "MaxBoxAccV2); the other numbers: means over the class's images of records.csv's columns, in the "
        "report table's units")


def _read(records_path: str | os.PathLike) -> tuple[dict[str, int], dict[str, dict[str, list[float]]],
                                                  dict[str, list[int]]]:
    """image_id -> label (labelled images), and role -> key -> the values of the rows, role -> labels."""
    columns = {key: METRICS[key].column or key for key in LOCALISATION_KEYS}
    labels: dict[str, int] = {}
    values: dict[str, dict[str, list[float]]] = {role: {key: [] for key in columns} for role in ROLES}
    row_labels: dict[str, list[int]] = {role: [] for role in ROLES}
    with open(records_path, **TEXT) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        at = {name: header.index(name) for name in ("image_id", "role", "label")}
        where = {key: header.index(column) for key, column in columns.items() if column in header}
        for row in reader:
            if not row[at["label"]]:
                continue   # an unlabelled image has no true class
            label, role = int(row[at["label"]]), row[at["role"]]
            labels[row[at["image_id"]]] = label
            row_labels[role].append(label)
            for key in columns:
                cell = row[where[key]] if key in where else ""
                values[role][key].append(float(cell) if cell else math.nan)
    return labels, values, row_labels


def _bits_at(packed: np.ndarray, index: int) -> np.ndarray:
    """The bool outcomes at threshold `index` of bit-packed `(N, ..., T/8)` rows (np.packbits order)."""
    return ((packed[..., index // 8] >> (7 - index % 8)) & 1).astype(bool)


def _box_accuracy(correctness: Mapping[str, Mapping[str, np.ndarray]], boxed_labels: np.ndarray,
                  best_taus: Mapping[str, Mapping[str, float]]) -> dict[int, dict[str, dict[str, Any]]]:
    """label -> role -> {"box_acc_v2": mean over deltas, "box_acc_v2_by_delta": {delta: %}}."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    labelled = boxed_labels >= 0
    if not labelled.any():
        return out
    present, index = np.unique(boxed_labels[labelled], return_inverse=True)
    images = np.bincount(index, minlength=len(present)).astype(np.float64)
    for role in ROLES:
        taus = best_taus.get(role) or {}
        if len(taus) != len(IOU_DELTAS) or any(math.isnan(t) for t in taus.values()):
            continue
        v2 = correctness[role]["v2"][labelled]
        by_delta = {}
        for d, delta in enumerate(IOU_DELTAS):
            key = f"{delta:.1f}"
            at = int(np.argmin(np.abs(THRESHOLDS - taus[key])))
            hits = np.bincount(index, weights=_bits_at(v2[:, d], at), minlength=len(present))
            by_delta[key] = hits / images * 100.0
        for i, label in enumerate(present.tolist()):
            shares = {key: float(values[i]) for key, values in by_delta.items()}
            out.setdefault(label, {})[role] = {"box_acc_v2": float(np.mean(list(shares.values()))),
                                               "box_acc_v2_by_delta": shares}
    return out


def per_class_breakdown(records_path: str | os.PathLike, correctness: Mapping[str, Mapping[str, np.ndarray]],
                        boxed_ids: Sequence[str], best_taus: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """`{"rule": ..., "classes": [{"label", "images", "boxed_images", "baseline": {...}, "nc": {...}}]}`
    in label order (see the module's docstring); empty where no image has a label."""
    labels, values, row_labels = _read(records_path)
    if not labels:
        return {}
    boxed_labels = np.array([labels.get(i, -1) for i in boxed_ids], dtype=np.int64) if correctness else None
    image_labels = np.fromiter(labels.values(), dtype=np.int64, count=len(labels))
    present = np.unique(image_labels)
    means: dict[str, dict[str, np.ndarray]] = {}
    for role in ROLES:   # per class and key: the mean of the numbers (NaN: none), by bincount
        where = np.searchsorted(present, np.array(row_labels[role], dtype=np.int64))
        means[role] = {}
        for key in LOCALISATION_KEYS:
            column = np.array(values[role][key], dtype=np.float64)
            valid = ~np.isnan(column)
            sums = np.bincount(where[valid], weights=column[valid], minlength=len(present))
            counts = np.bincount(where[valid], minlength=len(present))
            with np.errstate(invalid="ignore", divide="ignore"):
                means[role][key] = np.where(counts > 0, sums / counts, np.nan) * METRICS[key].scale
    images = np.bincount(np.searchsorted(present, image_labels), minlength=len(present))
    boxed = (np.bincount(np.searchsorted(present, boxed_labels[boxed_labels >= 0]), minlength=len(present))
             if boxed_labels is not None else np.zeros(len(present), np.int64))
    box = _box_accuracy(correctness, boxed_labels, best_taus) if boxed_labels is not None else {}
    classes = []
    for i, label in enumerate(present.tolist()):
        entry: dict[str, Any] = {"label": label, "images": int(images[i]), "boxed_images": int(boxed[i])}
        for role in ROLES:
            numbers: dict[str, Any] = dict(box.get(label, {}).get(role, {}))
            for key in LOCALISATION_KEYS:
                value = float(means[role][key][i])
                numbers[key] = None if math.isnan(value) else value
            entry[role] = numbers
        classes.append(entry)
    return {"rule": RULE, "classes": classes}


def _cell(value: Any, places: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


SHOWN = 50   # classes listed in report.md at most (all of them are in report.json)


def name_classes(breakdown: Mapping[str, Any], class_names: Sequence[str] | None) -> None:
    """Add each class's `name` (from the models' class names) to a `per_class_breakdown`."""
    for entry in breakdown.get("classes", []):
        if class_names and 0 <= entry["label"] < len(class_names):
            entry["name"] = class_names[entry["label"]]


def per_class_md(breakdown: Mapping[str, Any]) -> str:
    """report.md's section: one row per class (the `SHOWN` with the largest NC − baseline
    BoxAccV2 gap when there are more), BoxAccV2, GT-known Loc and the pointing game per model."""
    classes = list(breakdown.get("classes", []))
    if not classes:
        return ""
    boxed = any("box_acc_v2" in c.get("baseline", {}) for c in classes)
    shown = classes
    intro = f"All {len(classes)} classes with a label."
    if len(classes) > SHOWN:
        def gap(c: Mapping[str, Any]) -> float:
            base, nc = c["baseline"].get("box_acc_v2"), c["nc"].get("box_acc_v2")
            return abs(nc - base) if base is not None and nc is not None else -1.0
        shown = sorted(sorted(classes, key=gap, reverse=True)[:SHOWN], key=lambda c: c["label"])
        intro = (f"The {SHOWN} of {len(classes)} classes with the largest |NC − baseline| in BoxAccV2 (all of "
                 "them in report.json's `per_class`).")
    header = ["class", "images"]
    keys = ([("box_acc_v2", "BoxAccV2 (%)", 1)] if boxed else []) + [
        ("gt_known_loc", "GT-known Loc (%)", 1), ("pointing_game", "pointing", 3)]
    for _, title, _ in keys:
        header += [f"{title} baseline", f"{title} NC"]
    lines = ["## Per class (localisation)", "",
             f"{intro} BoxAccV2: at each model's best tau of the whole data set per IoU delta (0.3/0.5/0.7), so "
             "the classes average, weighted by their boxed images, to the table's MaxBoxAccV2; the other numbers "
             "are means over the class's images. Few images per class make these numbers noisy: no interval "
             "is given.", "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for c in shown:
        name = c.get("name")
        cells = [f"{c['label']}" + (f" {name}" if name else ""), str(c["images"])]
        for key, _, places in keys:
            cells += [_cell(c["baseline"].get(key), places), _cell(c["nc"].get(key), places)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
