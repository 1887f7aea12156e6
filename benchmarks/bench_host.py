"""The host side of `ncviz batch`: figures per second and CPU milliseconds per figure, with the
shipped demo pair (forward passes nearly free) so that decoding, colouring, composing, encoding
and writing are what is measured.

    .venv/bin/python benchmarks/bench_host.py [--small 40] [--large 640] [--runs 3]
        [--layouts compare,neurons] [--panel-size 224] [--image-size 256] [-- EXTRA BATCH FLAGS]

Each run is the CLI as a new user runs it (`ncviz batch IN -o OUT --panel-size 224 --layout L`,
the CLI's defaults otherwise) on generated 256-px JPEGs; the steady state is the difference of a
`--large` and a `--small` run (start-up, model loading and the first batches cancel), wall clock
and CPU time (user + system of the process and its children) alike. Prints one Markdown table.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

NCVIZ = Path(sys.executable).with_name("ncviz")


def make_images(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """`count` smooth random JPEGs (quality 90) of size x size: photo-like, cheap to make."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = Image.fromarray((rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8))
        coarse.resize((size, size), Image.Resampling.BICUBIC).save(folder / f"img{i:05d}.jpg", quality=90)


def timed_run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=40)
    parser.add_argument("--large", type=int, default=640)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layouts", default="compare,neurons")
    parser.add_argument("--panel-size", type=int, default=224)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("extra", nargs="*", help="more `ncviz batch` flags, after --")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ncviz-bench-host-"))
    try:
        make_images(root / "large", opts.large, opts.image_size)
        (root / "small").mkdir()
        for path in sorted((root / "large").iterdir())[:opts.small]:
            shutil.copy(path, root / "small" / path.name)
        figures = opts.large - opts.small
        print(f"`benchmarks/bench_host.py`: demo pair, {opts.image_size}-px JPEGs, --panel-size {opts.panel_size}, "
              f"{figures} figures = a {opts.large}- minus a {opts.small}-image run, {os.cpu_count()} cores, "
              f"load average before {os.getloadavg()[0]:.2f}\n")
        print("| layout | run | figures/s | CPU ms per figure | wall s (small / large) |")
        print("|---|---|---|---|---|")
        for layout in opts.layouts.split(","):
            for run in range(1, opts.runs + 1):
                timings = {}
                for size in ("small", "large"):
                    out = root / f"out-{size}"
                    shutil.rmtree(out, ignore_errors=True)
                    timings[size] = timed_run([str(NCVIZ), "batch", str(root / size), "-o", str(out),
                                               "--panel-size", str(opts.panel_size), "--layout", layout,
                                               *opts.extra])
                wall = timings["large"][0] - timings["small"][0]
                cpu = timings["large"][1] - timings["small"][1]
                print(f"| {layout} | {run} | {figures / wall:.0f} | {cpu / figures * 1000:.1f} | "
                      f"{timings['small'][0]:.1f} / {timings['large'][0]:.1f} |", flush=True)
        print(f"\nload average after {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
