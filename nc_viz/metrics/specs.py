"""What each number of `evaluate` is: one `MetricSpec` per metric, in one registry.

A spec says where the number lives (its key in report.json's `results` and `intervals`, its
column in records.csv), how the report shows it (the table's label, the unit: percent or not,
the fixed number of decimals `places`, which direction is better) and how it is made (`kind`):

- "per_image": a records.csv column only (no data-set number);
- "mean": the data set's number is the mean of the column over images (x 100 when in percent,
  the per-image values being 0/1 or shares), with a paired bootstrap interval of that mean;
- "dataset": computed from the whole data set by `metrics.wsol` (MaxBoxAcc, MaxBoxAccV2 from
  the threshold curves, PxAP from the pixel histograms), already in its unit.

`measure` is what fills a per-image or mean metric's column (`metrics.measures.Measure`: a
function of the forwarded chunk or of one image's scored map; specs filled by one computation
share it), run by evaluate's scoring for every registered spec; `faithfulness` names instead
the `faithfulness` metric that fills a column (computed only when asked): such specs are
declared and registered by that metric's module (`metrics.faithfulness.FaithfulnessMetric`
carries them). The registration order is the order of records.csv's columns and of the
report's table: this module's own specs first, then those of the modules that register theirs.
Importing this module imports every module of the package (`load_metrics`), so the table is
whole before anyone reads it. Adding a metric to `evaluate` is one `register(...)` here (its
`Measure`'s function may live here or in any metrics module), or one `FaithfulnessMetric` in a
metrics module. This module's own code uses no torch.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

from ..core.registry import NamedRegistry, import_modules
from .measures import BOX_HITS, NEURON_DIVERSITY, PUBLISHED_CORR, REGIONS, Measure

__all__ = ["MetricSpec", "METRICS", "KINDS", "register", "unregister", "load_metrics", "record_columns",
           "mean_columns", "faithfulness_columns", "table_labels", "percent_keys", "measures", "measured_columns"]

KINDS = ("per_image", "mean", "dataset")
BETTER = ("higher", "lower")


@dataclass(frozen=True)
class MetricSpec:
    """One number `evaluate` reports (see the module's docstring)."""

    name: str                        # result key in report.json (a per-image-only metric: its column)
    kind: str                        # "per_image", "mean" or "dataset"
    column: str | None = None        # records.csv column; None for a "dataset" number
    label: str | None = None         # the report table's row; None: not in the table
    percent: bool = False            # the number is in percent
    better: str | None = None        # "higher" or "lower"; None where neither is
    faithfulness: str | None = None  # the `faithfulness` name that computes the column
    measure: Measure | None = None   # what computes the column otherwise (`metrics.measures`)
    decimals: int | None = None      # decimals in the report's tables; None: 1 in percent, else 3

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if (self.column is None) != (self.kind == "dataset"):
            raise ValueError(f"metric {self.name!r}: a per-image or mean metric has a column, a data-set one none")
        if self.kind == "per_image" and self.label is not None:
            raise ValueError(f"metric {self.name!r}: a per-image column has no data-set number to show")
        if self.kind != "per_image" and self.label is None:
            raise ValueError(f"metric {self.name!r}: a data-set number needs a label")
        if self.measure is not None and (self.column is None or self.faithfulness is not None):
            raise ValueError(f"metric {self.name!r}: a measure fills a column, and not a faithfulness one")
        if self.better is not None and self.better not in BETTER:
            raise ValueError(f"metric {self.name!r}: better must be one of {', '.join(BETTER)} or None")
        if self.decimals is not None and not 0 <= self.decimals <= 6:
            raise ValueError(f"metric {self.name!r}: decimals must be 0..6 or None")

    @property
    def places(self) -> int:
        """The fixed number of decimals the report prints this metric with (its value, the
        difference and the interval): `decimals`, else 1 for a number in percent (as the
        wsolevaluation paper prints them) and 3 for shares, rates, correlations and AUCs."""
        if self.decimals is not None:
            return self.decimals
        return 1 if self.percent else 3

    @property
    def unit(self) -> str:
        """The unit the report prints: "%" or "" (a share, rate, correlation or AUC)."""
        return "%" if self.percent else ""

    @property
    def scale(self) -> float:
        """The factor from the mean of the column to the reported number (100 for a mean in percent)."""
        return 100.0 if self.percent and self.kind == "mean" else 1.0


_REGISTRY: NamedRegistry[MetricSpec] = NamedRegistry("metric")
METRICS = _REGISTRY.items  # name -> MetricSpec, in registration order
register = _REGISTRY.register
unregister = _REGISTRY.unregister

for _spec in (
    MetricSpec("probability", "per_image", "probability"),
    MetricSpec("iou_tau_0.2", "per_image", "iou_tau_0.2", better="higher", measure=BOX_HITS),
    MetricSpec("accuracy", "mean", "correct", "top-1 accuracy", better="higher"),
    MetricSpec("max_box_acc", "dataset", None, "MaxBoxAcc (%, delta 0.5, largest box)", percent=True,
               better="higher"),
    MetricSpec("max_box_acc_v2", "dataset", None, "MaxBoxAccV2 (%, delta 0.3/0.5/0.7, all boxes)", percent=True,
               better="higher"),
    MetricSpec("gt_known_loc", "mean", "gt_known_loc", "GT-known Loc (%, tau 0.2)", percent=True, better="higher",
               measure=BOX_HITS),
    MetricSpec("top1_loc", "mean", "top1_loc", "Top-1 Loc (%, tau 0.2)", percent=True, better="higher",
               measure=BOX_HITS),
    MetricSpec("pxap", "dataset", None, "PxAP (%, masks)", percent=True, better="higher"),
    MetricSpec("energy", "mean", "energy", "positive CAM energy inside the ground truth", better="higher",
               measure=REGIONS),
    MetricSpec("pointing_game", "mean", "pointing", "pointing game (hit rate)", better="higher", measure=REGIONS),
    MetricSpec("instance_coverage_multi", "mean", "coverage_multi", "instance coverage (images with 2+ instances)",
               better="higher", measure=REGIONS),
    MetricSpec("topk_corr", "mean", "topk_corr", "top-k maps: mean pairwise corr (lower = more diverse)",
               better="lower", measure=NEURON_DIVERSITY),
    MetricSpec("topk_iou", "mean", "topk_iou", "top-k maps: mean pairwise IoU (lower = more diverse)",
               better="lower", measure=NEURON_DIVERSITY),
    MetricSpec("published_corr", "mean", "published_corr",
               "all last-layer channels: published 'Corr' (lower = more diverse)", better="lower",
               measure=PUBLISHED_CORR),
):
    register(_spec)
del _spec

FIXED = ("correct",)   # a records.csv column of its own (records.FIXED_COLUMNS), not a metric column


def faithfulness_columns(name: str) -> tuple[str, ...]:
    """The records.csv columns that the `faithfulness` metric `name` fills, in registry order."""
    return tuple(s.column for s in METRICS.values() if s.faithfulness == name and s.column is not None)


def _selected(spec: MetricSpec, faithfulness: Sequence[str]) -> bool:
    return spec.faithfulness is None or spec.faithfulness in faithfulness


def record_columns(faithfulness: Sequence[str] = ()) -> tuple[str, ...]:
    """records.csv's metric columns: every metric's column (but `correct`), then the columns of
    the `faithfulness` names, in the order given."""
    base = tuple(s.column for s in METRICS.values()
                 if s.column is not None and s.column not in FIXED and s.faithfulness is None)
    return base + tuple(column for name in faithfulness for column in faithfulness_columns(name))


def mean_columns(faithfulness: Sequence[str] = ()) -> dict[str, str]:
    """Record column -> result key of every number that is a mean over images (the `faithfulness`
    names' columns after the others, in the order given)."""
    means = {s.column: s.name for s in METRICS.values()
             if s.kind == "mean" and s.column is not None and s.faithfulness is None}
    for name in faithfulness:
        means.update({s.column: s.name for s in METRICS.values()
                      if s.kind == "mean" and s.column is not None and s.faithfulness == name})
    return means


def table_labels() -> dict[str, str]:
    """Result key -> label of the numbers the report shows, in the table's order."""
    return {s.name: s.label for s in METRICS.values() if s.label is not None}


def percent_keys() -> frozenset[str]:
    """The result keys whose numbers are in percent."""
    return frozenset(s.name for s in METRICS.values() if s.percent and s.kind != "per_image")


def measures(stage: str) -> tuple[Measure, ...]:
    """The measures of `stage` ("forward" or "map") that fill registered columns, each once, in
    registry order."""
    found: dict[int, Measure] = {}
    for spec in METRICS.values():
        if spec.measure is not None and spec.measure.stage == stage:
            found.setdefault(id(spec.measure), spec.measure)
    return tuple(found.values())


def measured_columns(stage: str) -> tuple[str, ...]:
    """The record columns that the measures of `stage` fill, in registry order."""
    return tuple(s.column for s in METRICS.values()
                 if s.measure is not None and s.measure.stage == stage and s.column is not None)


def load_metrics() -> None:
    """Import every module of this package, so that each module that registers metrics (the
    faithfulness metrics' module) has registered them: importing this module calls it. A module
    already imported is not run again."""
    import_modules(__package__, sys.modules[__package__].__path__)


load_metrics()   # last: the modules it imports take `MetricSpec` and `register` from here
