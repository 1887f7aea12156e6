"""How similar two saliency maps are: the measures of Adebayo et al., "Sanity Checks for
Saliency Maps" (NeurIPS 2018), for the model parameter randomisation test (`ncviz sanity`).

Per image, between the original map `a` and the map `b` after randomisation, both (N, H, W)
arrays at the input resolution:

- `spearman_abs`: Spearman rank correlation of |a| and |b| (average ranks for ties);
- `spearman`: Spearman rank correlation of the signed maps;
- `ssim`: structural similarity (scikit-image's `structural_similarity`, its defaults: a
  7 x 7 uniform window, data range 1) of the absolute maps min-max normalised to [0, 1];
- `hog`: Pearson correlation of the HOG features (scikit-image's `hog`: 9 orientations,
  8 x 8-pixel cells, 3 x 3-cell blocks; smaller cells for maps under 24 pixels) of the same
  normalised absolute maps.

A correlation of a constant map (no ranking, no gradient) is undefined: NaN, counted by the
caller. Two identical maps give 1 on every measure that is defined. numpy, scipy and
scikit-image only.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

__all__ = ["SIMILARITIES", "hog_features", "hog_pearson", "map_similarities", "normalise_abs", "pearson_rows",
           "spearman_rows", "ssim"]

SIMILARITIES: Mapping[str, str] = {
    "spearman_abs": "Spearman (absolute)",
    "spearman": "Spearman (signed)",
    "ssim": "SSIM",
    "hog": "HOG Pearson",
}
"""Measure key -> label, in the order of the paper's figures."""


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `a` with the same row of `b` ((N, D) each), float64;
    NaN where either row is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    dot = (a * b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each map of `a` with the same map of `b` ((N, ...) each):
    Pearson correlation of the average ranks (ties share their mean rank), as scipy's `spearmanr`."""
    from scipy.stats import rankdata

    n = len(a)
    ra = rankdata(np.asarray(a, dtype=np.float64).reshape(n, -1), axis=1)
    rb = rankdata(np.asarray(b, dtype=np.float64).reshape(n, -1), axis=1)
    return pearson_rows(ra, rb)


def normalise_abs(maps: np.ndarray) -> np.ndarray:
    """|maps| min-max normalised to [0, 1] per map ((N, H, W)); a flat map gives 0."""
    m = np.abs(np.asarray(maps, dtype=np.float64))
    lo = m.min(axis=(1, 2), keepdims=True)
    span = m.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1.0), 0.0)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image's SSIM of two (H, W) maps already in [0, 1] (data range 1, 7 x 7 window
    or the largest odd window that fits)."""
    from skimage.metrics import structural_similarity

    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        return math.nan
    return float(structural_similarity(a, b, data_range=1.0, win_size=window))


def _hog_cells(side: int) -> int:
    """Pixels per HOG cell: scikit-image's 8, smaller for maps under 24 pixels (3 cells a side)."""
    return 8 if side >= 24 else max(1, side // 3)


def hog_features(image: np.ndarray) -> np.ndarray:
    """scikit-image's HOG of one (H, W) map: 9 orientations, 3 x 3-cell blocks, L2-Hys."""
    from skimage.feature import hog

    cell = _hog_cells(min(image.shape))
    return hog(image, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(3, 3),
               block_norm="L2-Hys", feature_vector=True)


def hog_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the HOG features of two (H, W) maps; NaN when either is flat."""
    return float(pearson_rows(hog_features(a)[None], hog_features(b)[None])[0])


def map_similarities(original: np.ndarray, current: np.ndarray) -> dict[str, np.ndarray]:
    """Every measure of `SIMILARITIES`, per image, of (N, H, W) maps: key -> (N,) float64."""
    original = np.asarray(original, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if original.shape != current.shape or original.ndim != 3:
        raise ValueError(f"maps must be two (N, H, W) arrays of one shape, got {original.shape} and {current.shape}")
    a, b = normalise_abs(original), normalise_abs(current)
    return {
        "spearman_abs": spearman_rows(np.abs(original), np.abs(current)),
        "spearman": spearman_rows(original, current),
        "ssim": np.array([ssim(x, y) for x, y in zip(a, b)], dtype=np.float64),
        "hog": np.array([hog_pearson(x, y) for x, y in zip(a, b)], dtype=np.float64),
    }
