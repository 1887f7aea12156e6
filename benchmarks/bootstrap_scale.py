"""The paired bootstrap at ImageNet-val scale: time and peak memory, one statistic per process.

Simulates per-image outcomes like the reference's and runs the bootstrap that `ncviz evaluate`
runs on them (`--what`):
- `box`: MaxBoxAccV2-like curves `(N, 3, 1000)` (each image correct on an interval of the 256
  uint8 levels that the 1000 thresholds `int(tau * 255)` give), bit-packed as evaluate keeps
  them, with tau re-chosen in every resample: `paired_bootstrap_max_over_tau(..., packed_count)`
  (unpacked a chunk of images at a time);
- `box-unpacked`: the same curves unpacked all at once first (what evaluate did before; runs
  on older checkouts too, for the comparison);
- `mean`: `paired_bootstrap_mean` of one per-image column;
- `pxap`: per-image mask histograms `(2, 1002)` of both models written to disk in evaluate's
  compressed blocks, then `evaluate.summary.pxap_interval` (PxAP recomputed per resample, the
  files read a block at a time).
Memory: the resident memory once the inputs are ready, and the peak (VmHWM, reset through
/proc/self/clear_refs just before) while the bootstrap runs. Linux only.

    .venv/bin/python benchmarks/bootstrap_scale.py --what box|box-unpacked|mean|pxap \
        [--images 50000] [--resamples 1000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nc_viz.metrics.bootstrap import paired_bootstrap_max_over_tau, paired_bootstrap_mean  # noqa: E402
from nc_viz.metrics.wsol import THRESHOLDS  # noqa: E402

_CHUNK = 4096


def curves(rng: np.random.Generator, images: int, accuracy: float) -> np.ndarray:
    """`(images, 3, 125)` packed: correct between two random uint8 levels, for `accuracy` of them
    (narrower intervals for the higher IoU levels); generated a chunk at a time."""
    levels = (THRESHOLDS * 255).astype(int)
    out = np.empty((images, 3, 125), dtype=np.uint8)
    for start in range(0, images, _CHUNK):
        k = min(_CHUNK, images - start)
        lo = rng.integers(0, 200, (k, 1))
        rows = []
        for width in (120, 80, 40):
            hi = lo + rng.integers(0, width, (k, 1))
            hit = rng.random((k, 1)) < accuracy
            rows.append(hit & (levels >= lo) & (levels <= hi))
        out[start:start + k] = np.packbits(np.stack(rows, axis=1), axis=-1)
    return out


def status_mib(key: str) -> float:
    """VmRSS or VmHWM of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def write_histograms(rng: np.random.Generator, images: int,
                     folder: Path) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Both models' per-image mask histograms (Poisson counts around a smooth profile, ~55,000
    pixels per image, as at 224 px) in evaluate's on-disk blocks: the paths and the PxAP of all images, by role."""
    from nc_viz.tasks.evaluate.outcomes import HistogramWriter
    from nc_viz.metrics.wsol import MASK_BINS, pxap_of

    x = np.linspace(0.0, 1.0, MASK_BINS)
    paths, pxap = {}, {}
    for role, sharp in (("baseline", 6.0), ("nc", 7.0)):
        fg, bg = np.exp(sharp * (x - 1)) * 30, np.exp(-sharp * x) * 300
        paths[role] = [str(folder / f"{role}.histograms")]
        total = np.zeros((2, MASK_BINS))
        with HistogramWriter(paths[role][0]) as writer:
            for start in range(0, images, _CHUNK):
                k = min(_CHUNK, images - start)
                scale = rng.uniform(0.5, 1.5, (k, 1))
                t, f = rng.poisson(fg * scale), rng.poisson(bg / scale)
                total += t.sum(axis=0), f.sum(axis=0)
                for i in range(k):
                    writer.add(start + i, t[i], f[i])
        pxap[role] = float(pxap_of(total[0], total[1]))
    return paths, pxap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=("box", "box-unpacked", "mean", "pxap"), default="box")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="ncviz-bootstrap-") as tmp:
        if args.what == "pxap":
            from nc_viz.tasks.evaluate.summary import pxap_interval

            paths, pxap = write_histograms(rng, args.images, Path(tmp))
            size = sum(Path(p).stat().st_size for ps in paths.values() for p in ps)
            inputs = f"histogram files {size / 2**20:.0f} MiB on disk"
            ready = _reset_peak()
            start = time.perf_counter()
            interval = pxap_interval(paths, pxap["baseline"], pxap["nc"], args.resamples, 0)
        else:
            base, nc = curves(rng, args.images, 0.60), curves(rng, args.images, 0.62)
            inputs = f"packed outcomes {2 * base.nbytes / 2**20:.0f} MiB"
            ready = _reset_peak()
            start = time.perf_counter()
            if args.what == "box":
                interval = paired_bootstrap_max_over_tau(base, nc, n=args.resamples, packed_count=1000)
            elif args.what == "box-unpacked":
                unpack = (np.unpackbits(a, axis=-1, count=1000).astype(bool) for a in (base, nc))
                interval = paired_bootstrap_max_over_tau(*unpack, n=args.resamples)
            else:
                column = (np.unpackbits(a[:, 1], axis=-1, count=1000)[:, 300].astype(float) for a in (base, nc))
                interval = paired_bootstrap_mean(*column, n=args.resamples)
        seconds = time.perf_counter() - start
        peak = status_mib("VmHWM")
    print(f"{args.what}: {args.images} images x {args.resamples} resamples: {seconds:.1f} s; resident "
          f"{ready:.0f} MiB with the inputs ({inputs}), peak {peak:.0f} MiB during the bootstrap "
          f"(+{peak - ready:.0f}); diff {interval.diff:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]")


def _reset_peak() -> float:
    """Reset VmHWM to the current resident memory (Linux: clear_refs 5); returns VmRSS, MiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mib("VmRSS")


if __name__ == "__main__":
    main()
