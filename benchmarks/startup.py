"""Start-up cost of one small command: `ncviz compare one.png` on the shipped demo pair.

Runs the command N times, each in a fresh process, and reports the median CPU time (user + sys
of the child, all its threads) and wall time, beside `python -c "import torch"` measured the same
way (the floor no command can go below). CPU time moves less than wall time when other work
shares the machine. Usage:

    .venv/bin/python benchmarks/startup.py [--runs 5] [--threads N] [-- extra ncviz args]

The image is a 64-px random PNG written to a temporary folder; the figure goes there too.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of `argv` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the children")
    parser.add_argument("extra", nargs="*", help="more ncviz compare arguments (after --)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "one.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
        commands = {
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "ncviz compare one.png (demo pair)": [sys.executable, "-m", "nc_viz", "compare", str(image),
                                                  "-o", str(Path(tmp) / "fig.png"), *args.extra],
        }
        results = {name: [] for name in commands}
        for _ in range(args.runs):  # alternate, so that drift of the machine's load hits both alike
            for name, argv in commands.items():
                results[name].append(measure(argv, env))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.runs} runs each, {os.cpu_count()} cores, load average {load:.2f}, "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}")
    print("| command | CPU s (median, min-max) | wall s (median) |")
    print("|---|---|---|")
    for name, runs in results.items():
        cpu = [c for c, _ in runs]
        wall = [w for _, w in runs]
        print(f"| `{name}` | {statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}) | "
              f"{statistics.median(wall):.2f} |")


if __name__ == "__main__":
    main()
