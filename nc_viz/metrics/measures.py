"""What fills evaluate's per-image metric columns: a `Measure` is one computation that gives one
or more columns, named by the `MetricSpec`s of `metrics.specs` it fills (`MetricSpec.measure`);
`evaluate`'s scoring code runs every registered measure and has no line of its own per metric.

Two stages:

- "forward": `compute(view: ForwardView) -> {column: (N,) tensor}`, on the device, once per
  model and forwarded chunk (the CAM output and the pooled features at hand);
- "map": `compute(view: MapView) -> {column: float}`, once per image and model, on the map
  scored as the reference does (numpy; images may be measured in parallel threads).

A measure may leave out a column it cannot fill for an image (no boxes, no regions): the cell
is then empty. The implementations are imported when first called (numba and torch are not
needed to read the metric table).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..cams.compute import CamOutput
    from .boxes import BoxCorrectness

__all__ = ["Measure", "ForwardView", "MapView", "STAGES", "NEURON_DIVERSITY", "PUBLISHED_CORR", "BOX_HITS",
           "REGIONS"]

STAGES = ("forward", "map")


@dataclass(frozen=True)
class Measure:
    """One computation that fills the columns of the specs naming it (see the module's docstring)."""

    name: str
    stage: str                                     # "forward" or "map"
    compute: Callable[[Any], Mapping[str, Any]]

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"measure {self.name!r}: stage must be one of {', '.join(STAGES)}, got {self.stage!r}")


@dataclass(frozen=True)
class ForwardView:
    """One model on one forwarded chunk, on the device."""

    out: CamOutput                 # logits, explained class, CAM and top-k neuron maps
    features: torch.Tensor         # F (N, C, h, w): what the classifier pools
    top_q: float                   # the neuron maps' top share for their IoU


@dataclass(frozen=True)
class MapView:
    """One image and one model, its map at the scoring size S."""

    resized: np.ndarray            # the CAM resized to S x S (float64)
    scoremap: np.ndarray           # the same, min-max normalised as the reference scores it
    regions: np.ndarray            # instance regions (n, S, S) bool: the masks, else one per box
    outcome: BoxCorrectness | None  # box correctness at every threshold; None without boxes
    correct: bool                  # the model's top-1 class is the label
    fraction: float                # instance coverage: the share of the positive energy an instance needs
    tolerance: float               # pointing game: pixels around the maximum


def _neuron_diversity(view: ForwardView) -> dict[str, torch.Tensor]:
    from . import neuron_map_diversity

    corr, iou = neuron_map_diversity(view.out.neuron_maps.float(), view.top_q)
    return {"topk_corr": corr, "topk_iou": iou}


def _published_corr(view: ForwardView) -> dict[str, torch.Tensor]:
    from . import published_corr

    return {"published_corr": published_corr(view.features.float())}


def _box_hits(view: MapView) -> dict[str, float]:
    from .wsol import CAM_PAPER_TAU_INDEX

    if view.outcome is None:
        return {}
    hit = bool(view.outcome.v1[CAM_PAPER_TAU_INDEX])
    return {"iou_tau_0.2": float(view.outcome.best_iou_v1[CAM_PAPER_TAU_INDEX]),
            "gt_known_loc": float(hit), "top1_loc": float(hit and view.correct)}


def _regions(view: MapView) -> dict[str, float]:
    from .map_kernels import energy_and_coverage
    from .wsol import pointing_hit

    if not len(view.regions):
        return {}
    regions = view.regions
    energy, coverage = energy_and_coverage(view.resized, np.ascontiguousarray(regions, dtype=bool), view.fraction)
    return {"energy": float(energy), "pointing": float(pointing_hit(view.scoremap, regions, view.tolerance)),
            "coverage_multi": float(coverage) if len(regions) > 1 else math.nan}


NEURON_DIVERSITY = Measure("neuron_diversity", "forward", _neuron_diversity)
PUBLISHED_CORR = Measure("published_corr", "forward", _published_corr)
BOX_HITS = Measure("box_hits", "map", _box_hits)
REGIONS = Measure("regions", "map", _regions)
