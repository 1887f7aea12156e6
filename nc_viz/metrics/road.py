"""ROAD (Rong et al., ICML 2022) through grad-cam's own implementation (`pytorch_grad_cam.metrics.road`).

grad-cam is imported only when ROAD is asked for. Per image, with p the softmax probability of the
explained class (`ClassifierOutputSoftmaxTarget`) and percentiles 10..90:

- `road_morf`: grad-cam's `ROADMostRelevantFirstAverage`: mean over the percentiles of
  p(imputed) - p(original), the pixels above the percentile removed by noisy linear imputation.
  Lower (more negative) is better: removing what the map calls important should hurt.
- `road_lerf`: `ROADLeastRelevantFirstAverage`, the same removing the pixels below: higher (closer
  to 0) is better.
- `road_combined`: `(road_lerf - road_morf) / 2`, as grad-cam's `ROADCombined`: higher is better.

The maps are min-max normalised first (grad-cam's LeRF flips them as `1 - map`). The imputation adds
noise from torch's CPU generator; it is drawn from `seed` inside a forked generator, so a run is
reproducible and the caller's random state is untouched. Cost: 2 x 2 x 9 forward images per image,
plus a sparse solve per image and percentile on the CPU (the dominant cost at 224 px).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core.errors import ParameterFailure
from .perturbation import autocast_for, check_inputs, minmax_normalise

__all__ = ["ROAD_PERCENTILES", "road_scores", "require_grad_cam"]

ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def require_grad_cam() -> None:
    """Raise one clear line when grad-cam (with its ROAD metrics) is not installed."""
    try:
        import pytorch_grad_cam.metrics.road  # noqa: F401
    except ImportError as exc:
        raise ParameterFailure("faithfulness", f"{{param}} road needs the grad-cam package (pip install grad-cam): "
                                               f"{exc}") from None


def _per_image(scores: np.ndarray, device: torch.device) -> torch.Tensor:
    """grad-cam's per-image numpy scores as a (N,) float32 tensor."""
    return torch.as_tensor(np.asarray(scores, dtype=np.float32).reshape(-1), device=device)


def road_scores(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor | Sequence[int],
                percentiles: Sequence[int] = ROAD_PERCENTILES, *, seed: int = 0,
                autocast: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """`road_morf`, `road_lerf`, `road_combined`, each (N,) float32 on x's device, from grad-cam's
    MoRF and LeRF averagers on the maps (resized to x's size, min-max normalised)."""
    require_grad_cam()
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    maps, target = check_inputs(x, maps, target)
    cams = minmax_normalise(maps).cpu().numpy().astype(np.float32)
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target.tolist()]
    wanted = list(percentiles)
    with torch.random.fork_rng(devices=[]), torch.no_grad(), autocast_for(x.device, autocast), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # grad-cam hands torch tensors to numpy
        torch.manual_seed(seed)
        lerf = ROADLeastRelevantFirstAverage(wanted)(x, cams, targets, model)   # LeRF first, as ROADCombined
        morf = ROADMostRelevantFirstAverage(wanted)(x, cams, targets, model)
    lerf_t, morf_t = _per_image(lerf, x.device), _per_image(morf, x.device)
    return {"road_morf": morf_t, "road_lerf": lerf_t, "road_combined": (lerf_t - morf_t) / 2}
