"""Numbers a figure can carry: neuron diversity and map resizing (this module), the
localisation protocol of the field, its compiled kernels, faithfulness, the registry of
evaluate's metrics and the statistics of paired comparisons (submodules).

Pure torch: tensors in, tensors or Python scalars out, on whatever device the input lives.
Diversity functions take a set of maps `(K, h, w)` or a batch `(N, K, h, w)` and return one
value per image: a 0-d tensor, or shape `(N,)`. `upsample_map` resizes a map bilinearly
(`align_corners=False`).

Arithmetic is done in float32 (float64 inputs stay float64).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "upsample_map",
    "mean_pairwise_correlation",
    "mean_pairwise_iou",
    "published_corr",
    "summarise",
]


# ----------------------------------------------------------------------------- helpers

def _as_float(x: torch.Tensor) -> torch.Tensor:
    """float64 stays, everything else (ints, bool, half, bfloat16) becomes float32."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_map_set(x: torch.Tensor, name: str, what: str) -> tuple[torch.Tensor, bool]:
    """Validate a `(K, h, w)` or `(N, K, h, w)` tensor; return it batched and float, and
    whether it came batched."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"{name} must have shape ({what}, h, w) or (N, {what}, h, w), got {tuple(x.shape)}"
        )
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name} has an empty spatial size {tuple(x.shape[-2:])}")
    batched = x.dim() == 4
    x = _as_float(x)
    return (x if batched else x.unsqueeze(0)), batched


def _unbatch(values: torch.Tensor, batched: bool) -> torch.Tensor:
    return values if batched else values[0]


def _unit_rows(v: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """Divide each row (last dim) by its norm; rows with norm <= tol become zero."""
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    ok = norm > tol
    return torch.where(ok, v / torch.where(ok, norm, torch.ones_like(norm)), torch.zeros_like(v))


def _mean_upper_pairs(m: torch.Tensor) -> torch.Tensor:
    """Mean of the strictly upper triangle (i < j) of a batch of (K, K) matrices."""
    k = m.shape[-1]
    i, j = torch.triu_indices(k, k, offset=1, device=m.device)
    return m[..., i, j].mean(dim=-1)


def upsample_map(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize the last two dims of `cam` (`(..., h, w)`) to `size` = (H, W), bilinearly.

    `align_corners=False`, as in `F.interpolate`; the values are not rescaled or clipped.
    Returns a float tensor `(..., H, W)`; a map already at `size` is returned (as float) as is.
    """
    if not isinstance(cam, torch.Tensor):
        raise ValueError(f"cam must be a torch.Tensor, got {type(cam).__name__}")
    if cam.dim() < 2:
        raise ValueError(f"cam must have at least 2 dims (..., h, w), got {tuple(cam.shape)}")
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise ValueError(f"size must be two positive ints (H, W), got {tuple(size)}")
    out_hw = (int(size[0]), int(size[1]))
    cam = _as_float(cam)
    h, w = cam.shape[-2:]
    if (h, w) == out_hw:
        return cam
    if h == 0 or w == 0:
        raise ValueError(f"cam has an empty spatial size {(h, w)}")
    lead = cam.shape[:-2]
    flat = cam.reshape(-1, 1, h, w)
    up = F.interpolate(flat, size=out_hw, mode="bilinear", align_corners=False)
    return up.reshape(*lead, *out_hw)


# ----------------------------------------------------------------------------- diversity

def mean_pairwise_correlation(maps: torch.Tensor) -> torch.Tensor:
    """Mean Pearson correlation over all pairs i < j of the K flattened maps.

    `maps`: `(K, h, w)` or `(N, K, h, w)`; returns a 0-d tensor or `(N,)`.
    A constant map (zero variance, up to rounding) correlates 0 with every map, so the result
    is never NaN for finite input. With K < 2 there is no pair and the result is NaN.
    """
    x, batched = _check_map_set(maps, "maps", "K")
    n, k = x.shape[:2]
    if k < 2:
        return _unbatch(torch.full((n,), math.nan, dtype=x.dtype, device=x.device), batched)
    flat = x.flatten(2)                                         # (N, K, P)
    p = flat.shape[-1]
    centred = flat - flat.mean(dim=-1, keepdim=True)
    const = (flat == flat[..., :1]).all(dim=-1, keepdim=True)  # exactly constant maps
    scale = flat.abs().amax(dim=-1, keepdim=True)
    tol = p * torch.finfo(x.dtype).eps * scale                 # rounding residue of centring
    z = _unit_rows(centred, tol) * (~const)
    corr = (z @ z.transpose(-1, -2)).clamp(-1.0, 1.0)          # (N, K, K)
    return _unbatch(_mean_upper_pairs(corr), batched)


def mean_pairwise_iou(maps: torch.Tensor, top_q: float = 0.2) -> torch.Tensor:
    """Mean IoU over pairs i < j of each map's top-`top_q` region.

    `maps`: `(K, h, w)` or `(N, K, h, w)`; returns a 0-d tensor or `(N,)`.
    Each map's region is its `max(1, round(top_q * h * w))` largest positions; ties are broken
    by position (row-major, earlier first), so the result is deterministic on every device.
    All regions have the same size, so a union is never empty. K < 2 gives NaN.
    """
    if not (isinstance(top_q, (int, float)) and 0.0 < float(top_q) <= 1.0):
        raise ValueError(f"top_q must be a fraction in (0, 1], got {top_q!r}")
    x, batched = _check_map_set(maps, "maps", "K")
    n, k = x.shape[:2]
    if k < 2:
        return _unbatch(torch.full((n,), math.nan, dtype=x.dtype, device=x.device), batched)
    flat = x.flatten(2)                                         # (N, K, P)
    p = flat.shape[-1]
    size = max(1, round(float(top_q) * p))
    order = torch.sort(flat, dim=-1, descending=True, stable=True).indices[..., :size]
    region = torch.zeros_like(flat).scatter_(-1, order, 1.0)   # (N, K, P) in {0, 1}
    inter = region @ region.transpose(-1, -2)                  # (N, K, K) counts
    iou = inter / (2 * size - inter)
    return _unbatch(_mean_upper_pairs(iou), batched)


def neuron_map_diversity(neuron_maps: torch.Tensor, top_q: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean pairwise correlation, mean pairwise IoU of top-`top_q` regions) of top-k neuron maps.

    `neuron_maps` `(N, K, h, w)` are `w_k^c f_k`; both numbers are taken on their magnitude
    `|w_k^c| f_k` (f_k >= 0 after the last ReLU), the spatial pattern of each neuron whatever the
    sign of its weight. For the default ranking (positive contributions) this changes nothing;
    ranked by activation, a neuron with a negative weight would otherwise flip the correlation
    and put its "top region" on the background. Returns two `(N,)` tensors.
    """
    magnitude = neuron_maps.abs()
    return mean_pairwise_correlation(magnitude), mean_pairwise_iou(magnitude, top_q)


def published_corr(features: torch.Tensor) -> torch.Tensor:
    """The published code's "Corr" diversity measure of a feature tensor.

    `features`: `(C, h, w)` or `(N, C, h, w)`; returns a 0-d tensor or `(N,)`.
    Per image: subtract, at every position, the mean over channels; take each channel's
    centred flattened map as a vector; mean of |cosine similarity| over the full C x C matrix,
    diagonal included. A (numerically) zero vector has similarity 0 with everything,
    itself included. Note: for C = 2 the two centred channels are exact negatives, so the
    value is 1.0 unless the channels are identical (then 0.0).
    """
    x, batched = _check_map_set(features, "features", "C")
    c = x.shape[1]
    flat = x.flatten(2)                                         # (N, C, P)
    p = flat.shape[-1]
    centred = flat - flat.mean(dim=1, keepdim=True)
    scale = flat.abs().flatten(1).amax(dim=-1)[:, None, None]  # per image
    tol = 2 * c * math.sqrt(p) * torch.finfo(x.dtype).eps * scale
    z = _unit_rows(centred, tol)
    return _unbatch(_mean_abs_gram(z), batched)


def _mean_abs_gram(z: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """Mean over i, j of min(1, |z_i . z_j|) for each image of `z` (N, C, P), computed in blocks of
    `rows` rows so that each block of the C x C matrix stays in cache (one pass, no C x C copy)."""
    total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    zt = z.transpose(-1, -2)
    for start in range(0, z.shape[1], rows):
        block = z[:, start:start + rows] @ zt                   # (N, rows, C)
        total += block.abs_().clamp_(max=1.0).sum(dim=(-2, -1))
    return total / (z.shape[1] * z.shape[1])


# ----------------------------------------------------------------------------- summary

def summarise(values: Iterable[float]) -> dict[str, float | int]:
    """Mean of the non-NaN values and their count: `{"mean": float, "n": int}`.

    Accepts floats, bools (pointing game: the mean is the hit rate) or 0-d tensors.
    With no non-NaN value the mean is NaN and n is 0.
    """
    kept = [v for v in (float(v) for v in values) if not math.isnan(v)]
    mean = math.fsum(kept) / len(kept) if kept else math.nan
    return {"mean": mean, "n": len(kept)}
