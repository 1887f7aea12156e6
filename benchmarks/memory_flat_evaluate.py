"""Memory stays flat in `ncviz evaluate`: resident memory at the 200th image vs at the last.

Generates N (default 2,000) small annotated images with `ncviz make-data` (64 px, instance
masks and boxes, the `ncviz` layout), scores them with the shipped demo pair through the
library call behind `ncviz evaluate` (records streamed to a file, per-image threshold outcomes
appended to a raw file), and reads VmRSS / VmHWM of this process from /proc/self/status (and
the summed VmRSS of its DataLoader workers) when the batch holding the 200th image is done and
when the last one is, then the peak after the bootstrap. Passes when the peak (VmHWM) grows by
less than --limit (5%) between the first two. Linux only.

    .venv/bin/python benchmarks/memory_flat_evaluate.py [--images 2000] [--workers 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory_flat import children_rss_kib, status_kib  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description="peak RSS at the 200th vs the last image of `ncviz evaluate`")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--at", type=int, default=200, help="the early sample point")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--limit", type=float, default=0.05, help="allowed growth of the peak RSS")
    args = p.parse_args()

    from nc_viz.api import load_model_pair
    from nc_viz.cli import main as ncviz
    from nc_viz.datasets import read_annotated
    from nc_viz.evaluate import EvalOptions, evaluate_dataset

    samples: dict[str, dict[str, Any]] = {}
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        if "early" not in samples and done >= args.at:
            samples["early"] = dict(status_kib(), workers=children_rss_kib(), n=done)
        if done == args.images:
            samples["last"] = dict(status_kib(), workers=children_rss_kib(), n=done)

    with tempfile.TemporaryDirectory(prefix="ncviz-mem-eval-") as tmp:
        root = Path(tmp)
        assert ncviz(["make-data", str(root / "data"), "--count", str(args.images), "--seed", "3"]) == 0
        pair = load_model_pair(device="cpu")
        dataset = read_annotated(root / "data", "ncviz", class_names=pair.baseline.meta.class_names)
        start = time.perf_counter()
        evaluation = evaluate_dataset(pair, dataset, EvalOptions(batch_size=args.batch_size, workers=args.workers,
                                                                 bootstrap=args.bootstrap),
                                      records_path=root / "records.csv", on_batch=on_batch)
        wall = time.perf_counter() - start
    after = dict(status_kib(), workers=0, n="after bootstrap")
    early, last = samples["early"], samples["last"]
    growth_hwm = last["VmHWM"] / early["VmHWM"] - 1
    growth_rss = last["VmRSS"] / early["VmRSS"] - 1
    print(f"{evaluation.images} images (64 px, masks and boxes) in {wall:.0f} s, workers {args.workers}, "
          f"batch {args.batch_size}, bootstrap {args.bootstrap}")
    print("| at image | VmRSS MiB | VmHWM (peak) MiB | workers' VmRSS MiB |")
    print("|---|---|---|---|")
    for s in (early, last, after):
        print(f"| {s['n']} | {s['VmRSS'] / 1024:.1f} | {s['VmHWM'] / 1024:.1f} | {s['workers'] / 1024:.1f} |")
    print(f"peak growth {growth_hwm:+.2%}, RSS growth {growth_rss:+.2%} (limit {args.limit:.0%})")
    ok = growth_hwm < args.limit
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
