"""Score maps as clovaai/wsolevaluation makes them: bicubic resize to S x S, then min-max.

Mirrors `inference.py` of the reference (github.com/clovaai/wsolevaluation, commit 96f4b88):
- `normalize_scoremap`  <- `inference.normalize_scoremap` (NaN anywhere or a constant map -> zeros;
  else `cam -= min; cam /= max`, in the dtype it is given);
- `resize_scoremap`     <- `CAMComputer.compute_and_evaluate_cams`:
  `cv2.resize(cam, image_size, interpolation=cv2.INTER_CUBIC)`, reimplemented in numpy
  so that cv2 is not needed at run time: OpenCV's `resizeGeneric_` with `HResizeCubic` /
  `VResizeCubic` (a = -0.75, sample position `(float)((d + 0.5) * scale - 0.5)`, weights from
  `interpolateCubic` in float32, replicated border, horizontal pass then vertical pass, sums of four
  products left to right). On a float64 map it equals `cv2.resize` bit for bit (tested against cv2
  when it is importable). The reference works in float64 (`util.t2n` casts to `np.float`): use
  `reference_scoremap` to reproduce its score map exactly.

Precision matters for exactness: the box metrics read `(scoremap * 255).astype(np.uint8)`. On 500
random 7 x 7 CAMs resized to 224, a float32 resize + normalise changed that uint8 map (by one level,
at one pixel or so) in 122 maps; a float64 map stored as float32 and read back, in 51. So score
the float64 `reference_scoremap`, and store maps as float64 for the reference's evaluator to
reproduce the numbers (its `check_scoremap_validity` also refuses anything but float64).

`torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` also uses a = -0.75 and
the same sample positions but computes in float32: measured against cv2 (float64) on unit-normal
7 x 7 maps resized to 224, the largest difference is 6e-7 (1e-4 when downsizing 300 x 200 to 224),
enough to move a pixel across a uint8 level now and then, so it is not used here. cv2 itself on a
float32 map differs from its float64 result by up to 5e-7 (SIMD float32 sums).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["normalize_scoremap", "resize_scoremap", "reference_scoremap", "scored_maps"]

_CUBIC_A = np.float32(-0.75)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalise a map to [0, 1] exactly like the reference (a copy; input untouched).

    Any NaN, or a constant map, gives zeros. The dtype is kept (float32 in, float32 out);
    integer input becomes float32.
    """
    cam = np.array(cam, dtype=cam.dtype if np.issubdtype(np.asarray(cam).dtype, np.floating) else np.float32)
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def _cubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices `(out, 4)` (border replicated) and float32 weights `(out, 4)` of cv2's
    INTER_CUBIC along one axis."""
    scale = 1.0 / (out_size / in_size)                    # cv2: scale_x = 1. / inv_scale_x
    pos = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
    start = np.floor(pos).astype(np.int64)
    x = pos - start.astype(np.float32)                    # float32, as `fx -= sx`
    a, one = _CUBIC_A, np.float32(1)
    w0 = ((a * (x + one) - np.float32(5) * a) * (x + one) + np.float32(8) * a) * (x + one) - np.float32(4) * a
    w1 = ((a + np.float32(2)) * x - (a + np.float32(3))) * x * x + one
    y = one - x
    w2 = ((a + np.float32(2)) * y - (a + np.float32(3))) * y * y + one
    w3 = one - w0 - w1 - w2
    weights = np.stack([w0, w1, w2, w3], axis=1).astype(np.float32)
    index = np.clip(start[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return index, weights


def _resize_axis0(src: np.ndarray, out_size: int) -> np.ndarray:
    """Cubic resize along axis 0 in float64, four products summed left to right."""
    index, weights = _cubic_taps(src.shape[0], out_size)
    w = weights.astype(np.float64)
    out = src[index[:, 0]] * w[:, 0:1]
    for k in range(1, 4):
        out = out + src[index[:, k]] * w[:, k:k + 1]
    return out


def resize_scoremap(cam: np.ndarray, size: int | tuple[int, int], dtype: type = np.float32) -> np.ndarray:
    """Resize a raw map `(h, w)` to `size` (S, or (H, W)) as `cv2.resize(..., INTER_CUBIC)` does.

    Computed in float64 (as the reference, whose maps are float64), returned as `dtype`
    (float32 by default; pass `np.float64` to keep the reference's exact values). Not normalised.
    """
    cam = np.asarray(cam)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f"cam must be a non-empty (h, w) array, got shape {cam.shape}")
    out_h, out_w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    src = cam.astype(np.float64)
    if src.shape == (out_h, out_w):
        return src.astype(dtype)
    rows = _resize_axis0(src.T, out_w).T                  # horizontal pass first, as cv2
    return _resize_axis0(rows, out_h).astype(dtype)


def reference_scoremap(cam: np.ndarray, size: int) -> np.ndarray:
    """The score map the reference evaluates: float64 bicubic resize to S x S, then min-max."""
    return normalize_scoremap(resize_scoremap(cam, size, dtype=np.float64))


@lru_cache(maxsize=64)
def _taps64(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`_cubic_taps` with the weights as float64 (as `_resize_axis0` multiplies), cached."""
    index, weights = _cubic_taps(in_size, out_size)
    return index, weights.astype(np.float64)


def scored_maps(cam: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`(resized, scoremap)`: `resize_scoremap(cam, size, np.float64)` and `normalize_scoremap` of
    it, bit for bit, in one compiled pass that releases Python's lock (maps with an infinity, or
    already at S x S, take the numpy path)."""
    src = np.asarray(cam, dtype=np.float64)
    if src.ndim != 2 or src.size == 0 or src.shape == (size, size) or not np.isfinite(src).all():
        resized = resize_scoremap(src, size, dtype=np.float64)
        return resized, normalize_scoremap(resized)
    from .map_kernels import resize_and_normalize

    index_x, weight_x = _taps64(src.shape[1], size)
    index_y, weight_y = _taps64(src.shape[0], size)
    return resize_and_normalize(np.ascontiguousarray(src), index_x, weight_x, index_y, weight_y)
