"""Memory stays flat in `ncviz batch`: resident memory at the 100th figure vs at the last.

Runs N (default 2,000) small generated images through two tiny CIFAR ResNets (resnet20 and
resnet20_nc, random init, 32 px) with the library call behind `ncviz batch` (with the CLI's
memory setting, `core/threads.keep_large_allocations`, unless --library-defaults), and reads
VmRSS / VmHWM of this process from /proc/self/status (and the summed VmRSS of its
DataLoader workers) when the 100th figure is done and when the last one is. Passes when
the peak (VmHWM) grows by less than --limit (5%) between the two. Linux only.

    .venv/bin/python benchmarks/memory_flat.py [--images 2000] [--workers 1] [--layout compare]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def status_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (KiB) of a process, from /proc/PID/status."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def children_rss_kib() -> int:
    """Summed VmRSS of this process's children (the DataLoader workers)."""
    import os

    me, total = os.getpid(), 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == me:
                total += status_kib(entry.name).get("VmRSS", 0)
        except (OSError, IndexError, ValueError):
            continue
    return total


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        size = tuple(int(v) for v in rng.integers(28, 64, 2))
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")


def make_pair(folder: Path) -> tuple[Path, Path]:
    import torch

    from nc_viz.models.checkpoints import ModelMeta, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess
    from nc_viz.models import build_model

    paths = []
    for seed, arch in enumerate(("resnet20", "resnet20_nc")):
        torch.manual_seed(seed)
        nc = arch.endswith("_nc")
        meta = ModelMeta(arch=arch, num_classes=10, preprocess=Preprocess(32, crop_pct=1.0),
                         reduction=8 if nc else None, placement="stages" if nc else None)
        paths.append(save_checkpoint(folder / f"{arch}.pt", build_model(arch, 10, input_size=32), meta))
    return paths[0], paths[1]


def main() -> int:
    p = argparse.ArgumentParser(description="peak RSS at the 100th vs the last image of `ncviz batch`")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--at", type=int, default=100, help="the early sample point")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--layout", default="compare", choices=["compare", "neurons"])
    p.add_argument("--limit", type=float, default=0.05, help="allowed growth of the peak RSS")
    p.add_argument("--render-pool", default="thread", choices=["thread", "process", "auto"],
                   help="thread (default): every figure is drawn in this process, whose memory is read")
    p.add_argument("--library-defaults", action="store_true",
                   help="leave glibc's allocation settings as they are, as a library caller does")
    args = p.parse_args()
    if not args.library_defaults:
        from nc_viz.core.threads import keep_large_allocations

        keep_large_allocations()

    from nc_viz.pair import PairSpec
    from nc_viz.tasks.batch import BatchEvents, BatchOptions, run_batch

    class Sampler(BatchEvents):
        def __init__(self) -> None:
            self.count = 0
            self.samples: dict[str, dict[str, Any]] = {}

        def done(self, record: dict[str, Any]) -> None:
            self.count += 1
            if self.count in (args.at, args.images):
                name = "early" if self.count == args.at else "last"
                self.samples[name] = dict(status_kib(), workers=children_rss_kib(), n=self.count)

    with tempfile.TemporaryDirectory(prefix="ncviz-mem-") as tmp:
        root = Path(tmp)
        make_images(root / "in", args.images)
        base, nc = make_pair(root)
        sampler = Sampler()
        start = time.perf_counter()
        summary = run_batch(root / "in", root / "out", events=sampler,
                            options=BatchOptions(layout=args.layout, top_k=4, workers=args.workers,
                                                 batch_size=args.batch_size, render_pool=args.render_pool),
                            pair_spec=PairSpec(baseline=base, nc=nc, device="cpu"))
        wall = time.perf_counter() - start
    print(f"{summary.totals['written']} figures ({args.layout}) in {wall:.0f} s, workers {args.workers}, "
          f"batch {args.batch_size}")
    return report_growth([sampler.samples["early"], sampler.samples["last"]], "figure", args.limit)


def report_growth(samples: list[dict[str, Any]], unit: str, limit: float) -> int:
    """Print the memory table of `samples` (the first and second are compared) and PASS/FAIL;
    the exit status (0 when the peak grew less than `limit`)."""
    early, last = samples[0], samples[1]
    growth_hwm = last["VmHWM"] / early["VmHWM"] - 1
    growth_rss = last["VmRSS"] / early["VmRSS"] - 1
    print(f"| at {unit} | VmRSS MiB | VmHWM (peak) MiB | workers' VmRSS MiB |")
    print("|---|---|---|---|")
    for s in samples:
        print(f"| {s['n']} | {s['VmRSS'] / 1024:.1f} | {s['VmHWM'] / 1024:.1f} | {s['workers'] / 1024:.1f} |")
    print(f"peak growth {growth_hwm:+.2%}, RSS growth {growth_rss:+.2%} (limit {limit:.0%})")
    ok = growth_hwm < limit
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
