"""What the perturbation metrics (`faithfulness`, `road`) share: their inputs checked and the maps
brought to the images' size, autocast, and per-map min-max normalising. Tensors in, tensors out.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from . import upsample_map


def check_inputs(x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor | Sequence[int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate `x` (N, C, H, W), `maps` (N, h, w) and `target` (N,); return the maps at (H, W)
    (bilinear when another size; float32, or float64 if given so) and the targets as long, both
    on x's device."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (N, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or maps.shape[0] != x.shape[0]:
        raise ValueError(f"maps must be a (N, h, w) tensor with N = {x.shape[0]}, "
                         f"got {getattr(maps, 'shape', type(maps).__name__)}")
    t = torch.as_tensor(target, dtype=torch.long, device=x.device).reshape(-1)
    if t.numel() != x.shape[0]:
        raise ValueError(f"{t.numel()} targets for {x.shape[0]} images")
    at_size = upsample_map(maps.to(x.device), x.shape[-2:])      # float64 maps stay float64: no new ties
    if not bool(torch.isfinite(at_size).all()):
        raise ValueError("maps hold NaN or infinite values")
    return at_size, t


def autocast_for(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast on `device` for `dtype` (bfloat16/float16), or nothing for float32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def minmax_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map (N, H, W) scaled to [0, 1] by its own min and max. A constant map carries no
    ranking and becomes all zeros (as `(m - min) / (max - min + eps)` would make it)."""
    flat = maps.flatten(1).float()
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)),
                         torch.zeros_like(flat))
    return scaled.view_as(maps)
