"""How close `ncviz batch` comes to the forward passes alone (the README's "Speed"), in one run.

On generated 224-px images and two randomly initialised ResNet-101 models (a resnet101
baseline and a resnet101_nc, saved as checkpoints in a temporary folder):

1. images/s of the two forward passes alone, same batch size: the limit (batch size over the
   median time of a batch, the first batch a warm-up);
2. `ncviz batch` (the library call behind it, same defaults) steady-state images/s and its
   ratio to (1); steady state = batch size over the median time between the last figures of
   consecutive batches, from the first batch's on (start-up excluded);
3. the same with `--layout neurons --top 8`;
4. render + encode milliseconds per figure for both layouts (no model, no disk);
5. `ncviz batch` again with forward passes that cost nothing (a result computed beforehand):
   the ceiling of the CPU side (decode, colour, render, encode, write), which is what limits a
   run on a GPU fast enough to hide the models.

Medians, and the limit measured right before and after each run (each ratio uses the mean of
those two), keep the ratios honest on a machine shared with other work; the load average is
printed. A second ratio in CPU seconds per image (this process, its threads and children) is a
cross-check that moves less with other load (but counts OpenMP spin-waiting).

Prints a markdown table. Run on demand, or `make bench`:

    .venv/bin/python benchmarks/bench_batch.py --images 48 --batch-size 8
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=48, help="generated images per measurement")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--workers", type=int, default=None, help="decode workers (default: ncviz's)")
    p.add_argument("--render-threads", type=int, default=None, help="render pool size (default: ncviz's)")
    p.add_argument("--render-pool", default="thread", choices=["thread", "process"])
    p.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--compress-level", type=int, default=1, help="zlib level of the figures' PNGs")
    p.add_argument("--top", type=int, default=8, help="neurons per row for the neurons layout")
    p.add_argument("--layouts", default="compare,neurons")
    p.add_argument("--arch", default="resnet101", help="baseline arch; the NC model is ARCH_nc")
    p.add_argument("--json", default=None, help="also write the main numbers to this JSON file")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- set-up


def make_images(folder: Path, count: int, size: tuple[int, int] = (320, 256)) -> list[Path]:
    """Smooth colour fields with shapes and noise, saved as JPEG (decode + resize + crop is real work)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(count):
        base = rng.uniform(0, 255, 3)
        slope = rng.uniform(-0.5, 0.5, (2, 3))
        img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
        cx, cy, r = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h), rng.uniform(20, 80)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 8, img.shape)
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def make_checkpoints(folder: Path, arch: str) -> tuple[Path, Path]:
    """Random-init baseline and NC checkpoints in the project's format (weights=None)."""
    import torch

    from nc_viz.models.checkpoints import ModelMeta, save_checkpoint
    from nc_viz.models.preprocessing import Preprocess
    from nc_viz.models import build_model

    paths = []
    for seed, name in enumerate((arch, f"{arch}_nc")):
        torch.manual_seed(seed)
        model = build_model(name, 1000)
        nc = name.endswith("_nc")
        meta = ModelMeta(arch=name, num_classes=1000, preprocess=Preprocess(224), reduction=8 if nc else None,
                         placement="stages" if nc else None)
        paths.append(save_checkpoint(folder / f"{name}.pt", model, meta))
    return paths[0], paths[1]


# ----------------------------------------------------------------------------- measurements


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and its children: live ones from /proc, ended ones
    from getrusage. Unlike wall time, it hardly moves when other work shares the machine."""
    import resource

    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ended.ru_utime + ended.ru_stime + live_children_cpu()


def live_children_cpu() -> float:
    """CPU seconds so far of this process's live child processes, from /proc."""
    me, tick, total = os.getpid(), os.sysconf("SC_CLK_TCK"), 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == me:
                    total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                continue
    return total


@dataclass
class Rate:
    """A throughput: images/s on the wall clock (median over batches) and CPU seconds per image."""

    per_second: float
    cpu_per_image: float


def forward_limit(pair: Any, tensors: Any, batch_size: int, precision: str) -> Rate:
    """The two models' forward passes alone, batch by batch; the first batch is a warm-up."""
    import torch

    from nc_viz.pair import autocast_dtype

    dtype = autocast_dtype(precision)
    device = pair.device

    def both(x: Any) -> None:
        x = x.to(device, non_blocking=True)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            for loaded in pair.roles.values():
                loaded.model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    batches = list(torch.split(tensors, batch_size))
    both(batches[0])
    times, cpu = [], cpu_seconds()
    for x in batches[1:]:
        start = time.perf_counter()
        both(x)
        times.append(time.perf_counter() - start)
    images = sum(len(x) for x in batches[1:])
    return Rate(batch_size / statistics.median(times), (cpu_seconds() - cpu) / images)


class CpuSampler:
    """Samples (wall time, cpu_seconds()) every `period` seconds in a background thread."""

    def __init__(self, period: float = 0.05) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(period,), daemon=True)

    def _loop(self, period: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), cpu_seconds()))
            self._stop.wait(period)

    def __enter__(self) -> CpuSampler:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, when: float) -> float:
        """CPU seconds at wall time `when`, interpolated between samples."""
        walls = [w for w, _ in self.samples]
        return float(np.interp(when, walls, [c for _, c in self.samples]))


def batch_throughput(src: Path, out: Path, ckpts: tuple[Path, Path], args: argparse.Namespace,
                     layout: str) -> tuple[Rate, float]:
    """run_batch in steady state, from the figures' modification times (when each was written):
    batch size over the median time between the last figures of consecutive batches, from the
    first batch's on (the second's with three or more; start-up excluded); CPU per image over the
    same window (this process and its children: not a process pool's processes); and the wall time."""
    from nc_viz.pair import PairSpec
    from nc_viz.tasks.batch import BatchOptions, run_batch

    b = args.batch_size
    options = BatchOptions(layout=layout, top_k=args.top, precision=args.precision, batch_size=b,
                           workers=args.workers, render_threads=args.render_threads,
                           render_pool=args.render_pool, compress_level=args.compress_level)
    start = time.perf_counter()
    with CpuSampler() as sampler:
        summary = run_batch(src, out, options=options,
                            pair_spec=PairSpec(baseline=ckpts[0], nc=ckpts[1], device=args.device))
    wall = time.perf_counter() - start
    assert summary.totals["written"] == args.images, summary.totals
    written = sorted(p.stat().st_mtime_ns / 1e9 for p in out.glob("*.png"))
    ends = written[b - 1::b] + ([written[-1]] if len(written) % b else [])
    # from the second batch on when there are three: a process pool's start delays the first
    first = 1 if len(ends) >= 3 else 0
    cpu = (sampler.at(written[-1]) - sampler.at(ends[first])) / (len(written) - b * (first + 1))
    return Rate(b / statistics.median(np.diff(ends[first:])), cpu), wall


def cpu_side_ceiling(src: Path, out: Path, ckpts: tuple[Path, Path], args: argparse.Namespace, layout: str,
                     pair: Any, tensors: Any) -> Rate:
    """(5) `ncviz batch` with forward passes that cost nothing: ModelPair.run returns a result
    computed beforehand. What is left (decode, colour, render, encode, write) is the ceiling of
    the CPU side, the limit on a GPU fast enough to hide the models."""
    from unittest import mock

    from nc_viz.pair import ModelPair

    top = args.top if layout == "neurons" else 0
    ready = pair.run(tensors[:args.batch_size], top_k=top, precision=args.precision)

    def instant(self: Any, x: Any, *_: Any, **__: Any) -> Any:
        return first_images(ready, len(x))

    with mock.patch.object(ModelPair, "run", instant):
        rate, _ = batch_throughput(src, out, ckpts, args, layout)
    return rate


def first_images(result: Any, n: int) -> Any:
    """The first `n` images of a batch result (a PairResult with every field cut)."""
    return result.images(slice(0, n))


def render_ms(pair: Any, tensors: Any, args: argparse.Namespace, layout: str) -> float:
    """Median milliseconds to render + PNG-encode one figure (no model, no disk)."""
    from nc_viz.tasks.batch.figures import RenderStyle, render_png, slice_result

    top = args.top if layout == "neurons" else 0
    result = pair.run(tensors[:args.batch_size], top_k=top, precision=args.precision)
    style = RenderStyle(layout, pair.baseline.meta.class_name, top_k=args.top, compress_level=args.compress_level)
    times = []
    for _ in range(2):
        for i in range(len(result.pictures)):
            one = slice_result(result, i)
            start = time.perf_counter()
            render_png(one, f"img{i}.jpg", style)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# ----------------------------------------------------------------------------- main

_STARTED = time.perf_counter()


def progress(step: str) -> None:
    """One line on stderr per finished step, with the seconds since start (where a time limit struck)."""
    print(f"bench_batch: {time.perf_counter() - _STARTED:6.1f} s  {step}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from nc_viz.pair import load_model_pair
    from nc_viz.engine.workers import default_render_threads, default_workers, usable_cores
    from nc_viz.models.inputs import load_batch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    layouts = [x for x in args.layouts.split(",") if x]
    load = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory(prefix="ncviz-bench-") as tmp:
        root = Path(tmp)
        src = root / "images"
        paths = make_images(src, args.images)
        ckpts = make_checkpoints(root, args.arch)
        pair = load_model_pair(ckpts[0], ckpts[1], device=args.device)
        tensors = load_batch(paths, pair.preprocess)
        progress("inputs and checkpoints")
        limits = [forward_limit(pair, tensors, args.batch_size, args.precision)]
        progress("forward passes alone")
        rows = {}
        for layout in layouts:  # the limit is measured before and after each layout's run
            rate, wall = batch_throughput(src, root / f"out-{layout}", ckpts, args, layout)
            progress(f"{layout}: ncviz batch ({wall:.1f} s)")
            ceiling = cpu_side_ceiling(src, root / f"ceiling-{layout}", ckpts, args, layout, pair, tensors)
            progress(f"{layout}: CPU-side ceiling")
            rows[layout] = (rate, wall, render_ms(pair, tensors, args, layout), ceiling)
            limits.append(forward_limit(pair, tensors, args.batch_size, args.precision))
            progress(f"{layout}: render alone, forward passes alone")
    workers = default_workers() if args.workers is None else args.workers
    threads = default_render_threads() if args.render_threads is None else args.render_threads
    command = " ".join(["benchmarks/bench_batch.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"`{command}`: {args.images} images of 224 px, {args.arch} + {args.arch}_nc (random init), "
          f"batch {args.batch_size}, device {args.device}, {args.precision}, {usable_cores()} cores, "
          f"torch threads {torch.get_num_threads()}, decode workers {workers}, render {args.render_pool}s {threads}, "
          f"PNG level {args.compress_level}; load average before / after: {load} / {os.getloadavg()[0]:.2f}")
    print()

    def row(title: str, cells: list[str]) -> None:
        print(f"| {title} | " + " | ".join(cells) + " |")

    row("measure", [f"`--layout {x}`" + (f" `--top {args.top}`" if x == "neurons" else "") for x in layouts])
    print("|---|" + "---|" * len(layouts))
    around = {x: limits[i:i + 2] for i, x in enumerate(layouts)}  # the limits before and after each run
    limit = {x: statistics.mean(r.per_second for r in around[x]) for x in layouts}
    limit_cpu = {x: statistics.mean(r.cpu_per_image for r in around[x]) for x in layouts}
    row("(1) forward passes alone, img/s (before / after the run)",
        [" / ".join(f"{r.per_second:.2f}" for r in around[x]) for x in layouts])
    row("(2, 3) `ncviz batch` steady state, img/s", [f"{rows[x][0].per_second:.2f}" for x in layouts])
    row("**ratio to (1)**, wall clock", [f"**{rows[x][0].per_second / limit[x]:.2f}**" for x in layouts])
    row("CPU s per image: forward alone / `ncviz batch`",
        [f"{limit_cpu[x]:.2f} / {rows[x][0].cpu_per_image:.2f}" for x in layouts])
    row("ratio to (1), CPU time (cross-check)", [f"{limit_cpu[x] / rows[x][0].cpu_per_image:.2f}" for x in layouts])
    row("`ncviz batch` wall time with start-up, s", [f"{rows[x][1]:.1f}" for x in layouts])
    row("(4) render + encode only, ms per figure", [f"{rows[x][2]:.0f}" for x in layouts])
    row("(5) `ncviz batch` with free forward passes (CPU-side ceiling), img/s",
        [f"{rows[x][3].per_second:.0f}" for x in layouts])
    row("(5) CPU s per image, CPU side alone", [f"{rows[x][3].cpu_per_image * 1000:.0f} ms" for x in layouts])
    if args.json:
        numbers = {x: {"forward_alone": limit[x], "batch": rows[x][0].per_second,
                       "ratio": rows[x][0].per_second / limit[x], "render_ms": rows[x][2],
                       "cpu_side_ceiling": rows[x][3].per_second, "wall_s": rows[x][1]} for x in layouts}
        settings = {"batch_size": args.batch_size, "device": args.device, "precision": args.precision,
                    "workers": workers, "render_threads": threads, "render_pool": args.render_pool,
                    "images": args.images}
        Path(args.json).write_text(json.dumps({"settings": settings, "layouts": numbers}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
