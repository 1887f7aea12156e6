"""Paired bootstrap intervals for "NC minus baseline" over images (numpy only).

What is resampled: images, with replacement, N of them per resample; the SAME resampled images
for both models (paired), so the interval is about the difference on this kind of data, with
the per-image correlation of the two models taken into account. A resample is stored as the
count of times each image was drawn (`np.bincount` of the drawn indices), so a resampled mean
is `counts @ values / N`: the same numbers as indexing, without copying the data per resample.
The interval is the percentile interval of the resampled differences.

For MaxBoxAcc-like metrics (`paired_bootstrap_max_over_tau`) the best threshold is chosen again
inside each resample, for each model: the accuracy curve over the T thresholds is the mean over
the resampled images, its maximum is taken per model, and the difference of the maxima is the
resampled statistic. Choosing tau once on all images would make the interval too narrow. The per-image outcomes may
come bit-packed; they are unpacked a chunk of images at a time, so memory holds the packed
outcomes and one chunk.

For a statistic pooled over the data set (PxAP: precision and recall from pixel histograms added
over images) the caller recomputes it on each resample: `resampled_sums` gives, per resample, the
count-weighted sum of the per-image integer arrays (the histograms of the images drawn, each as
often as drawn), read in chunks in any order; `interval_from_resamples` turns the recomputed
statistics into the interval.

NaN per-image values (a metric undefined for an image, e.g. coverage of a one-instance image):
an image where either model's value is NaN is left out of that metric's comparison, and the
number left out is reported (`Interval.n_dropped`); resampling is over the remaining images.

Deterministic for a seed: the resamples depend on `(seed, number of images, n)` only.

What may be claimed from an interval (`verdict`): nothing below `MIN_IMAGES_FOR_CLAIM` paired
images. A percentile bootstrap of a handful of images is too narrow (its resamples hold only
the few values seen, e.g. a 0/1 metric on 12 images can only move in steps of 1/12), so an
interval over fewer than 30 images is shown but never marked. From 30 images on, an interval
that excludes 0 says NC is better or worse in the metric's direction (`better`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import numpy as np

__all__ = ["Interval", "MIN_IMAGES_FOR_CLAIM", "VERDICTS", "interval_from_resamples", "verdict", "paired_bootstrap_mean", "paired_bootstrap_max_over_tau",
           "resample_counts", "resampled_sums"]

_CHUNK_ELEMENTS = 1 << 22      # resample counts drawn / multiplied per step (~4 M numbers)
_BLOCK_BYTES = 64 << 20        # float32 copy of a block of threshold columns


@dataclass(frozen=True)
class Interval:
    """NC minus baseline: the estimate on all images and its paired bootstrap interval."""

    diff: float
    low: float
    high: float
    excludes_zero: bool
    base: float
    nc: float
    level: float
    n_images: int
    n_dropped: int
    n_resamples: int

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


MIN_IMAGES_FOR_CLAIM = 30
VERDICTS = ("nc_better", "nc_worse", "differs", "no_clear_difference", "too_few_images")


def verdict(interval: Interval, better: str | None) -> str:
    """What `interval` supports, in the metric's direction `better` ("higher", "lower" or None):
    "too_few_images" below `MIN_IMAGES_FOR_CLAIM` paired images (or a NaN interval);
    "no_clear_difference" where the interval holds 0; else "nc_better" or "nc_worse", or
    "differs" for a metric with no better direction."""
    if interval.n_images < MIN_IMAGES_FOR_CLAIM or math.isnan(interval.low) or math.isnan(interval.high):
        return "too_few_images"
    if not interval.excludes_zero:
        return "no_clear_difference"
    if better is None:
        return "differs"
    return "nc_better" if (interval.low > 0.0) == (better == "higher") else "nc_worse"


def _check_settings(n: int, level: float) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (the bootstrap resamples) must be a positive number of resamples, got {n!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")


def _row_chunks(rows: int, per_row: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def resample_counts(n_images: int, n: int, seed: int) -> np.ndarray:
    """`(n, n_images)` uint8: how often each image is drawn in each of `n` resamples of
    `n_images` images with replacement (each row sums to `n_images`)."""
    rng = np.random.default_rng(seed)
    counts = np.empty((n, n_images), dtype=np.uint8)
    for rows in _row_chunks(n, n_images):
        k = rows.stop - rows.start
        drawn = rng.integers(0, n_images, size=(k, n_images))
        flat = np.bincount((drawn + (np.arange(k) * n_images)[:, None]).ravel(), minlength=k * n_images)
        if flat.max(initial=0) > np.iinfo(np.uint8).max:   # P < 1e-400 for any real N
            raise RuntimeError("an image was drawn more than 255 times in one resample")
        counts[rows] = flat.reshape(k, n_images)
    return counts


def _interval(diff: float, stats: np.ndarray, base: float, nc: float, level: float, n_images: int,
              n_dropped: int) -> Interval:
    alpha = 1.0 - float(level)
    low, high = (float(v) for v in np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0]))
    return Interval(diff=float(diff), low=low, high=high, excludes_zero=bool(low > 0.0 or high < 0.0),
                    base=float(base), nc=float(nc), level=float(level), n_images=n_images,
                    n_dropped=n_dropped, n_resamples=int(stats.shape[0]))


def _empty(level: float, n: int, n_dropped: int) -> Interval:
    nan = math.nan
    return Interval(nan, nan, nan, False, nan, nan, float(level), 0, n_dropped, n)


def paired_bootstrap_mean(base: np.ndarray, nc: np.ndarray, n: int = 1000, seed: int = 0,
                          level: float = 0.95) -> Interval:
    """Mean of `nc - base` over images `(N,)` with its `level` paired percentile interval from
    `n` resamples of the images. Images where either value is NaN are dropped (counted)."""
    _check_settings(n, level)
    b, c = np.asarray(base, dtype=np.float64).ravel(), np.asarray(nc, dtype=np.float64).ravel()
    if b.shape != c.shape:
        raise ValueError(f"base and nc must hold one value per image each, got {b.shape} and {c.shape}")
    keep = ~(np.isnan(b) | np.isnan(c))
    b, c = b[keep], c[keep]
    dropped = int((~keep).sum())
    if b.size == 0:
        return _empty(level, n, dropped)
    d = c - b
    counts = resample_counts(d.size, n, seed)
    stats = np.empty(n, dtype=np.float64)
    for rows in _row_chunks(n, d.size):
        stats[rows] = counts[rows].astype(np.float64) @ d / d.size
    return _interval(d.mean(), stats, b.mean(), c.mean(), level, d.size, dropped)


def _as_curves(x: np.ndarray, name: str, packed_count: int | None) -> np.ndarray:
    """`(N, T)` or `(N, D, T)` correctness (bit-packed along T when `packed_count`) -> `(N, D, T')`,
    still packed: unpacked chunk by chunk (`_unpacked`)."""
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3 or a.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (N, T) or (N, D, T) with T >= 1, got {np.shape(x)}")
    if packed_count is not None and (a.dtype != np.uint8 or a.shape[-1] != (packed_count + 7) // 8):
        raise ValueError(f"{name}: packed outcomes must be uint8 (N, D, {(packed_count + 7) // 8}), got "
                         f"{a.dtype} {a.shape}")
    return a


def _unpacked(a: np.ndarray, packed_count: int | None) -> np.ndarray:
    """Rows of `_as_curves` as bool `(k, D, T)`."""
    if packed_count is None:
        return a.astype(bool, copy=False)
    return np.unpackbits(a, axis=-1, count=packed_count).astype(bool)


def _distinct_columns(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(indices of the distinct columns of flat, inverse)`: `flat[:, kept][:, inverse] == flat`.

    The reference's thresholds repeat columns: a min-max normalised map scaled to uint8 has
    maximum 255, so the 1000 thresholds `int(tau * 255)` give at most 256 binarisations.
    """
    packed = np.packbits(flat, axis=0)
    first: dict[bytes, int] = {}
    inverse = np.empty(flat.shape[1], dtype=np.int64)
    kept = []
    for j in range(flat.shape[1]):
        key = packed[:, j].tobytes()
        if key not in first:
            first[key] = len(kept)
            kept.append(j)
        inverse[j] = first[key]
    return np.array(kept, dtype=np.int64), inverse


def _resampled_curves(m: np.ndarray, counts: np.ndarray, packed_count: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`(n, D*T)` float32 counts of correct images per resample and column (`counts @ m`) and
    `(D*T,)` int64 counts on all images. Read in chunks of images (unpacked one chunk at a time),
    multiplied on each chunk's distinct columns, in chunks of resamples; every partial sum is an
    integer below 2**24, so float32 is exact and the order of the chunks does not matter."""
    n_images = m.shape[0]
    per_image = m.shape[1] * (packed_count if packed_count is not None else m.shape[2])
    out = np.zeros((counts.shape[0], per_image), dtype=np.float32)
    totals = np.zeros(per_image, dtype=np.int64)
    step = max(1, _BLOCK_BYTES // (4 * per_image))
    for start in range(0, n_images, step):
        images = slice(start, min(n_images, start + step))
        flat = _unpacked(m[images], packed_count).reshape(images.stop - images.start, per_image)
        totals += flat.sum(axis=0)
        kept, inverse = _distinct_columns(flat)
        block = flat[:, kept].astype(np.float32)
        weights = counts[:, images]
        part = np.empty((counts.shape[0], kept.size), dtype=np.float32)
        for rows in _row_chunks(counts.shape[0], block.shape[0]):
            part[rows] = weights[rows].astype(np.float32) @ block
        out += part[:, inverse]
    return out, totals


def _best_mean(curves: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mean over D of the maximum over T, per row of `(rows, D*T)` accuracies."""
    return curves.reshape(-1, *shape).max(axis=-1).mean(axis=-1)


def paired_bootstrap_max_over_tau(base: np.ndarray, nc: np.ndarray, n: int = 1000, seed: int = 0,
                                  level: float = 0.95, packed_count: int | None = None) -> Interval:
    """NC minus baseline of the best accuracy over thresholds, with the best threshold chosen
    again inside each resample for each model.

    `base`, `nc`: bool `(N, T)` (image correct at threshold t: MaxBoxAcc) or `(N, D, T)` (one
    curve per IoU level, the statistic being the mean over D of each curve's maximum:
    MaxBoxAccV2). Values are accuracies in [0, 1]. With `packed_count=T` they are bit-packed
    along T (`np.packbits`, uint8) and unpacked a chunk of images at a time, so memory holds
    the packed outcomes (T / 8 bytes per curve and image) and one chunk, not N x D x T bools.
    """
    _check_settings(n, level)
    b, c = _as_curves(base, "base", packed_count), _as_curves(nc, "nc", packed_count)
    if b.shape != c.shape:
        raise ValueError(f"base and nc must have the same shape, got {b.shape} and {c.shape}")
    n_images = b.shape[0]
    shape = (b.shape[1], packed_count if packed_count is not None else b.shape[2])
    if n_images == 0:
        return _empty(level, n, 0)
    counts = resample_counts(n_images, n, seed)
    resampled_b, total_b = _resampled_curves(b, counts, packed_count)
    resampled_c, total_c = _resampled_curves(c, counts, packed_count)
    base_value = float(_best_mean(total_b[None] / float(n_images), shape)[0])
    nc_value = float(_best_mean(total_c[None] / float(n_images), shape)[0])
    stats = (_best_mean(resampled_c.astype(np.float64) / n_images, shape)
             - _best_mean(resampled_b.astype(np.float64) / n_images, shape))
    return _interval(nc_value - base_value, stats, base_value, nc_value, level, n_images, 0)


def resampled_sums(chunks: Iterable[tuple[np.ndarray, np.ndarray]], counts: np.ndarray) -> np.ndarray:
    """For each resample (row of `counts`, `(n, N)`), the count-weighted sum over images of a
    per-image integer array: `(n, *shape)` float64.

    `chunks` yields `(columns, values)`: the images' indices in `0..N-1` `(k,)` and their
    values `(k, *shape)` (e.g. histograms), in any order and any chunking. Integer values with
    every sum below 2**53 make each product and partial sum exact in float64, so the result does
    not depend on the order or grouping of the images (a sharded run equals one process).
    """
    out: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    for columns, values in chunks:
        values = np.asarray(values)
        if out is None:
            shape = values.shape[1:]
            out = np.zeros((counts.shape[0], int(np.prod(shape, dtype=np.int64))), dtype=np.float64)
        if values.shape[1:] != shape:
            raise ValueError(f"resampled_sums: values {values.shape[1:]} after {shape}")
        flat = values.reshape(len(values), -1).astype(np.float64)
        weights = counts[:, np.asarray(columns, dtype=np.int64)]
        for rows in _row_chunks(counts.shape[0], max(len(values), 1)):
            out[rows] += weights[rows].astype(np.float64) @ flat
    if out is None:
        raise ValueError("resampled_sums: no image")
    return out.reshape(counts.shape[0], *shape)


def interval_from_resamples(base: float, nc: float, base_stats: np.ndarray, nc_stats: np.ndarray, n_images: int,
                            level: float = 0.95) -> Interval:
    """The interval of a statistic recomputed on each resample by the caller (`nc_stats -
    base_stats`, one per resample) around the estimate on all images (`nc - base`). Resamples
    where either statistic is NaN (undefined on that draw) are left out: `n_resamples` counts
    those used."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    stats = np.asarray(nc_stats, dtype=np.float64) - np.asarray(base_stats, dtype=np.float64)
    stats = stats[~np.isnan(stats)]
    if n_images == 0 or stats.size == 0 or math.isnan(base) or math.isnan(nc):
        return _empty(level, int(stats.size), 0)
    return _interval(nc - base, stats, base, nc, level, n_images, 0)
