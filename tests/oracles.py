"""Torch reference measures, written for clarity rather than speed: the oracles that the
compiled kernels `evaluate` uses (`nc_viz.metrics.map_kernels.energy_and_coverage`,
`nc_viz.metrics.wsol.pointing_hit`) are checked against. They take one raw CAM `(h, w)` at any
resolution and instance masks `(n, H, W)` (or one mask `(H, W)`, nonzero = inside); the CAM is
upsampled to (H, W) with `nc_viz.metrics.upsample_map` (bilinear, `align_corners=False`) first.
Arithmetic in float32 (float64 stays float64)."""
from __future__ import annotations

import math

import numpy as np
import torch

from nc_viz.metrics import upsample_map
from nc_viz.metrics.wsol import box_masks


def _check_cam_masks(cam: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one CAM `(h, w)` and masks `(n, H, W)` (or one mask `(H, W)`).

    Returns the float CAM and the masks as bool `(n, H, W)` on the CAM's device.
    """
    if not isinstance(cam, torch.Tensor) or not isinstance(masks, torch.Tensor):
        raise ValueError("cam and masks must be torch.Tensors")
    if cam.dim() != 2:
        raise ValueError(f"cam must have shape (h, w), got {tuple(cam.shape)}")
    if cam.numel() == 0:
        raise ValueError(f"cam has an empty spatial size {tuple(cam.shape)}")
    if masks.dim() == 2:
        masks = masks.unsqueeze(0)
    if masks.dim() != 3:
        raise ValueError(f"masks must have shape (n, H, W) or (H, W), got {tuple(masks.shape)}")
    if masks.shape[-1] == 0 or masks.shape[-2] == 0:
        raise ValueError(f"masks have an empty spatial size {tuple(masks.shape[-2:])}")
    if masks.dtype != torch.bool:
        masks = masks != 0
    cam = cam if cam.dtype in (torch.float32, torch.float64) else cam.float()
    return cam, masks.to(cam.device)


def energy_in_masks(cam: torch.Tensor, masks: torch.Tensor) -> float:
    """Share of the positive CAM energy that lies inside the union of the masks.

    The CAM is upsampled to (H, W), then ReLU'd; returns sum inside / sum everywhere, in [0, 1].
    A CAM with no positive value, or no mask at all, gives 0.0.
    """
    cam, masks = _check_cam_masks(cam, masks)
    pos = upsample_map(cam, masks.shape[-2:]).clamp_min(0)
    total = pos.sum()
    if masks.shape[0] == 0 or not bool(total > 0):
        return 0.0
    inside = (pos * masks.any(dim=0)).sum()
    return float((inside / total).clamp(0.0, 1.0))


def pointing_game(cam: torch.Tensor, masks: torch.Tensor) -> bool:
    """True if the maximum of the upsampled CAM lies inside the union of the masks (no tolerance).

    Ties go to the first maximum in row-major order (so a constant map points at the top-left
    pixel). No mask gives False.
    """
    cam, masks = _check_cam_masks(cam, masks)
    if masks.shape[0] == 0:
        return False
    up = upsample_map(cam, masks.shape[-2:])
    idx = torch.argmax(up.flatten())
    return bool(masks.any(dim=0).flatten()[idx])


def instance_coverage(cam: torch.Tensor, masks: torch.Tensor, fraction: float = 0.5) -> float:
    """Share of instances whose own region reaches `fraction` of the map's maximum.

    With `M` = ReLU of the upsampled CAM, instance i is covered when
    `max(M inside mask i) >= fraction * max(M)`. A CAM with no positive value gives 0.0; an
    empty mask is never covered; n = 0 gives NaN.
    """
    if not (isinstance(fraction, (int, float)) and 0.0 <= float(fraction) <= 1.0):
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    cam, masks = _check_cam_masks(cam, masks)
    if masks.shape[0] == 0:
        return math.nan
    pos = upsample_map(cam, masks.shape[-2:]).clamp_min(0)
    gmax = pos.max()
    if not bool(gmax > 0):
        return 0.0
    neg_inf = torch.tensor(-math.inf, dtype=pos.dtype, device=pos.device)
    inst_max = torch.where(masks, pos, neg_inf).amax(dim=(-2, -1))     # (n,)
    return float((inst_max >= float(fraction) * gmax).float().mean())


def energy_in_boxes(cam: np.ndarray, boxes: np.ndarray) -> float:
    """`energy_in_masks` of a map at S x S on the masks of inclusive boxes `(n, 4)`."""
    cam = np.asarray(cam)
    return energy_in_masks(torch.from_numpy(cam.copy()), torch.from_numpy(box_masks(boxes, cam.shape)))


def box_coverage(cam: np.ndarray, boxes: np.ndarray, fraction: float = 0.5) -> float:
    """`instance_coverage` of a map at S x S with one mask per inclusive box `(n, 4)`."""
    cam = np.asarray(cam)
    return instance_coverage(torch.from_numpy(cam.copy()), torch.from_numpy(box_masks(boxes, cam.shape)), fraction)
