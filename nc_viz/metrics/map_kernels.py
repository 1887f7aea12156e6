"""Compiled per-map kernels for `evaluate` (numba, nogil, so a chunk's images can be measured in
threads). First, the reference's score map in one pass:
`resize_scoremap(cam, S, float64)` and `normalize_scoremap` of it, with the same float64
operations in the same order as the numpy code of `scoremap.py` (horizontal pass first, four
products summed left to right; `cam -= min; cam /= max`), so the values are bit for bit the same
(tested). Then the energy and instance-coverage numbers of a map at S, which torch would
compute with its own thread pool from every scoring thread at once (oversubscribing the cores).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def resize_and_normalize(cam: np.ndarray, index_x: np.ndarray, weight_x: np.ndarray, index_y: np.ndarray,
                         weight_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`cam` float64 `(h, w)`; cv2 INTER_CUBIC taps `(W, 4)` along x and `(H, 4)` along y (float64
    weights). Returns the resized map `(H, W)` and its min-max normalised copy (zeros when the
    map has a NaN or is constant)."""
    height, width = cam.shape
    out_h, out_w = index_y.shape[0], index_x.shape[0]
    rows = np.empty((height, out_w), np.float64)
    for r in range(height):
        for j in range(out_w):
            acc = cam[r, index_x[j, 0]] * weight_x[j, 0]
            for k in range(1, 4):
                acc = acc + cam[r, index_x[j, k]] * weight_x[j, k]
            rows[r, j] = acc
    resized = np.empty((out_h, out_w), np.float64)
    low, high, nan = np.inf, -np.inf, False
    for i in range(out_h):
        for j in range(out_w):
            acc = rows[index_y[i, 0], j] * weight_y[i, 0]
            for k in range(1, 4):
                acc = acc + rows[index_y[i, k], j] * weight_y[i, k]
            resized[i, j] = acc
            if acc != acc:
                nan = True
            low = min(low, acc)
            high = max(high, acc)
    scoremap = np.zeros((out_h, out_w), np.float64)
    if nan or low == high:
        return resized, scoremap
    top = -np.inf
    for i in range(out_h):
        for j in range(out_w):
            v = resized[i, j] - low
            scoremap[i, j] = v
            top = max(top, v)
    for i in range(out_h):
        for j in range(out_w):
            scoremap[i, j] = scoremap[i, j] / top
    return resized, scoremap


@njit(cache=True, nogil=True, error_model="numpy")
def energy_and_coverage(resized: np.ndarray, regions: np.ndarray, fraction: float) -> tuple[float, float]:
    """`energy_in_masks` and `instance_coverage` (torch, in tests/oracles.py) of a map already at S x S
    (float64, taken as float32 as `evaluate` passed it to them) and instance regions `(n, S, S)`
    bool, n >= 1: the share of the positive energy inside their union, and the share of
    instances whose maximum reaches `fraction` of the map's.

    The same decisions as the torch functions (float32 values and products; a map with a NaN
    gives 0.0 for both, as there; a +inf value makes the energy NaN, as there) and the same
    coverage (a float32 share, as torch's float32 mean). The energy's sums are float64 here and
    float32 in torch's own order there: the two differ by about 1e-8 (tested to 1e-6)."""
    n, height, width = regions.shape
    total, inside = 0.0, 0.0
    peak = np.float32(0.0)
    tops = np.full(n, -np.inf, np.float32)
    nan = False
    for y in range(height):
        for x in range(width):
            raw = np.float32(resized[y, x])
            nan |= raw != raw
            v = raw if raw > 0 else np.float32(0.0)
            total += v
            peak = max(peak, v)
            hit = False
            for i in range(n):
                if regions[i, y, x]:
                    hit = True
                    tops[i] = max(tops[i], v)
            if hit:
                inside += v
    if nan:
        return 0.0, 0.0
    if total == np.inf:
        energy = np.nan
    else:
        energy = min(max(inside / total, 0.0), 1.0) if total > 0 else 0.0
    if not peak > 0:
        return energy, 0.0
    bar = np.float32(fraction) * peak
    return energy, float(np.float32(np.sum(tops >= bar)) / np.float32(n))
