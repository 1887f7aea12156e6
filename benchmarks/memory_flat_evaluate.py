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

from memory_flat import children_rss_kib, report_growth, status_kib  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description="peak RSS at the 200th vs the last image of `ncviz evaluate`")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--at", type=int, default=200, help="the early sample point")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--limit", type=float, default=0.05, help="allowed growth of the peak RSS")
    args = p.parse_args()

    from nc_viz.pair import load_model_pair
    from nc_viz.cli import main as ncviz
    from nc_viz.datasets import read_annotated
    from nc_viz.tasks.evaluate import EvalOptions, evaluate_dataset

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
    print(f"{evaluation.images} images (64 px, masks and boxes) in {wall:.0f} s, workers {args.workers}, "
          f"batch {args.batch_size}, bootstrap {args.bootstrap}")
    return report_growth([samples["early"], samples["last"], after], "image", args.limit)


if __name__ == "__main__":
    sys.exit(main())
