"""The paired bootstrap at ImageNet-val scale: time and peak memory.

Simulates per-image BoxAcc curves like the reference's (each image correct on an interval of
the 256 uint8 levels that the 1000 thresholds `int(tau * 255)` give) for two models, then runs
`paired_bootstrap_max_over_tau` (tau re-chosen in every resample) and `paired_bootstrap_mean`.

    .venv/bin/python benchmarks/bootstrap_scale.py [--images 50000] [--thresholds 1000] [--resamples 1000]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nc_viz.metrics.bootstrap import paired_bootstrap_max_over_tau, paired_bootstrap_mean  # noqa: E402


def curves(rng: np.random.Generator, images: int, thresholds: int, accuracy: float) -> np.ndarray:
    """`(images, thresholds)` bool: correct between two random uint8 levels, for `accuracy` of them."""
    levels = (np.arange(thresholds) / thresholds * 255).astype(int)
    lo = rng.integers(0, 200, images)
    hi = lo + rng.integers(0, 120, images)
    hit = rng.random(images) < accuracy
    return hit[:, None] & (levels >= lo[:, None]) & (levels <= hi[:, None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--thresholds", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base, nc = curves(rng, args.images, args.thresholds, 0.60), curves(rng, args.images, args.thresholds, 0.62)
    start = time.perf_counter()
    box = paired_bootstrap_max_over_tau(base, nc, n=args.resamples)
    box_s = time.perf_counter() - start
    start = time.perf_counter()
    mean = paired_bootstrap_mean(base[:, 300].astype(float), nc[:, 300].astype(float), n=args.resamples)
    mean_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.images} images x {args.thresholds} thresholds x {args.resamples} resamples")
    print(f"max over tau: {box_s:.1f} s  diff {box.diff:+.4f} [{box.low:+.4f}, {box.high:+.4f}]")
    print(f"mean:         {mean_s:.2f} s  diff {mean.diff:+.4f} [{mean.low:+.4f}, {mean.high:+.4f}]")
    print(f"peak resident memory {peak:.0f} MiB (inputs: {2 * base.nbytes / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
