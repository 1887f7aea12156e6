"""From the merged accumulators, records, outcomes and mask histograms to the numbers: means, the
reference's box and mask numbers, and the paired bootstrap intervals (none with `bootstrap=0`)."""
from __future__ import annotations

import csv
import math
import os
from array import array
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ...metrics.bootstrap import (Interval, interval_from_resamples, paired_bootstrap_max_over_tau,
    paired_bootstrap_mean, resample_counts, resampled_sums)
from ...metrics.specs import METRICS
from ...metrics.wsol import THRESHOLDS, BoxAccumulator, MaskAccumulator, pxap_of
from .records import TEXT
from .options import ROLES, EvalOptions, mean_metrics
from .outcomes import histogram_chunks, histogram_positions
from .per_class import per_class_breakdown


@dataclass
class Evaluation:
    """The outcome of `evaluate_dataset`: numbers per model, intervals, and what was skipped."""

    results: dict[str, dict[str, Any]]
    intervals: dict[str, Interval]
    images: int
    failed: list[tuple[str, str]]
    curves: dict[str, dict[str, list[float]]]
    correctness: dict[str, dict[str, np.ndarray]]   # role -> {"v1": (N, 125), "v2": (N, 3, 125)} packed
    boxed_ids: list[str]
    faithfulness_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # role -> name -> mean
    bootstrap: int = 1000                            # resamples; 0: no intervals
    non_finite: dict[str, int] = field(default_factory=dict)  # role -> images whose outputs were not finite
    per_class: dict[str, Any] = field(default_factory=dict)   # per_class.per_class_breakdown (report only)
    protocol: dict[str, Any] = field(default_factory=dict)    # report.json's protocol settings, when known

    @property
    def has_non_finite(self) -> bool:
        """A model's outputs were not finite for some image: no interval is computed (the
        numbers of such a model compare nothing; see `summarise`)."""
        return any(self.non_finite.values())


def _value(text: str) -> float:
    """A records cell as a float: `1`/`0` for `correct`, NaN where empty."""
    return float(text) if text else math.nan


def record_columns(path: str | os.PathLike, columns: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """role -> column -> float64 values in file order, read row by row (no per-row objects kept)."""
    values = {role: {c: array("d") for c in columns} for role in ROLES}
    with open(path, **TEXT) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        role_at, where = header.index("role"), {c: header.index(c) for c in columns}
        for row in reader:
            for column, at in where.items():
                values[row[role_at]][column].append(_value(row[at]))
    return {role: {c: np.frombuffer(v, dtype=np.float64) for c, v in cols.items()} for role, cols in values.items()}


def summarise(records_path: str | os.PathLike, boxes: dict[str, BoxAccumulator], masks: dict[str, MaskAccumulator],
              outcomes: dict[str, np.ndarray], boxed_ids: list[str], options: EvalOptions, images: int,
              failed: list[tuple[str, str]], histograms: dict[str, list[str]] | None = None,
              non_finite: dict[str, int] | None = None) -> Evaluation:
    """Means of the records' columns, the reference's box and mask numbers, and the paired intervals
    (`histograms`: role -> the ranks' mask histogram files, for PxAP's).

    `non_finite`: role -> images whose logits or map were not finite (NaN weights). Where any
    image has them, no interval is computed, so no difference is marked as excluding 0: the
    means are still given (over the images where both models' values are numbers), and the
    caller warns."""
    non_finite = {role: int((non_finite or {}).get(role, 0)) for role in ROLES}
    requested = options.bootstrap
    if any(non_finite.values()):
        options = replace(options, bootstrap=0)
    results: dict[str, dict[str, Any]] = {role: {"images": images} for role in ROLES}
    intervals: dict[str, Interval] = {}
    means = mean_metrics(options)
    columns = record_columns(records_path, list(means))
    for column, key in means.items():
        base, nc = columns["baseline"][column], columns["nc"][column]
        if np.isnan(base).all():
            continue
        scale = METRICS[key].scale
        if options.bootstrap:
            intervals[key] = _scaled(paired_bootstrap_mean(base, nc, options.bootstrap, options.seed), scale)
            results["baseline"][key], results["nc"][key] = intervals[key].base, intervals[key].nc
        else:  # the same paired means, without the resamples
            keep = ~(np.isnan(base) | np.isnan(nc))
            for role, values in (("baseline", base), ("nc", nc)):
                results[role][key] = float(values[keep].mean()) * scale if keep.any() else math.nan
    curves: dict[str, dict[str, list[float]]] = {}
    correctness: dict[str, dict[str, np.ndarray]] = {}
    if boxes["baseline"].count:
        _box_results(boxes, outcomes, options, results, intervals, curves, correctness)
    if masks["baseline"].count:
        for role in ROLES:
            results[role]["pxap"] = masks[role].result()["pxap"]
        if options.bootstrap and histograms and all(histograms.get(role) for role in ROLES):
            intervals["pxap"] = pxap_interval(histograms, results["baseline"]["pxap"], results["nc"]["pxap"],
                                              options.bootstrap, options.seed)
    taus = {role: results[role].get("best_tau_by_delta") or {} for role in ROLES}
    per_class = per_class_breakdown(records_path, correctness, boxed_ids if correctness else [], taus)
    return Evaluation(results, intervals, images, failed, curves, correctness, boxed_ids if correctness else [],
                      bootstrap=requested, non_finite=non_finite, per_class=per_class)


def pxap_interval(histograms: dict[str, list[str]], base: float, nc: float, n: int, seed: int) -> Interval:
    """PxAP's paired bootstrap over images: each resample draws the masked images (in image
    order, `resample_counts`, as every other metric), adds the drawn images' histograms (each as
    often as drawn) and computes PxAP from them, for both models; read a block at a time."""
    positions = histogram_positions(histograms["baseline"])
    if not np.array_equal(positions, histogram_positions(histograms["nc"])):
        raise RuntimeError("the two models' mask histograms are of different images")
    counts = resample_counts(len(positions), n, seed)
    stats = {}
    for role in ROLES:
        sums = resampled_sums(histogram_chunks(histograms[role], positions), counts)   # (n, 2, MASK_BINS)
        stats[role] = pxap_of(sums[:, 0], sums[:, 1])
    return interval_from_resamples(base, nc, stats["baseline"], stats["nc"], len(positions))


def _box_results(boxes: dict[str, BoxAccumulator], outcomes: dict[str, np.ndarray], options: EvalOptions,
                 results: dict[str, dict[str, Any]], intervals: dict[str, Interval],
                 curves: dict[str, dict[str, list[float]]], correctness: dict[str, dict[str, np.ndarray]]) -> None:
    """MaxBoxAcc (V1) and MaxBoxAccV2 with their best taus, and their intervals with tau re-chosen."""
    for role in ROLES:
        box = boxes[role].result()
        results[role].update({"max_box_acc": box["max_box_acc"], "max_box_acc_v2": box["max_box_acc_v2"],
                              "box_acc_v2_by_delta": box["box_acc_v2_by_delta"],
                              "best_tau_by_delta": box["best_tau_by_delta"], "best_tau_v1": box["best_tau_v1"],
                              "boxed_images": box["count"]})
        curves[role] = box["curves"]
        correctness[role] = {"v1": outcomes[role]["v1"], "v2": outcomes[role]["v2"]}
    if not options.bootstrap:
        return
    for key, kind in (("max_box_acc", "v1"), ("max_box_acc_v2", "v2")):   # unpacked a chunk at a time
        intervals[key] = _scaled(paired_bootstrap_max_over_tau(
            correctness["baseline"][kind], correctness["nc"][kind], options.bootstrap, options.seed,
            packed_count=len(THRESHOLDS)), 100.0)


def _scaled(interval: Interval, scale: float) -> Interval:
    """The interval in other units (accuracies in percent, as the reference prints them)."""
    if scale == 1.0:
        return interval
    return replace(interval, diff=interval.diff * scale, low=interval.low * scale, high=interval.high * scale,
                   base=interval.base * scale, nc=interval.nc * scale)
