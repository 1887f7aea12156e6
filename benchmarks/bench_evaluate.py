"""How close `ncviz evaluate` with box metrics comes to the forward passes alone (the README's "Speed").

One run, on generated 320 x 256 JPEGs with 1-3 boxes each (the `wsol` layout) and two randomly
initialised ResNet-101 models (resnet101 and resnet101_nc, 1000 classes, 224 px; the helpers of
`bench_batch.py`):

1. images/s of the two forward passes alone, same batch size: the limit (measured before and
   after the evaluation; the ratio uses their mean);
2. `evaluate_dataset` (the library call behind `ncviz evaluate`, the CLI's defaults) in steady
   state: batch size over the median time between consecutive batches' ends (the first
   batch, start-up and the final bootstrap excluded);
3. where the time of (2) goes, per image: the forward passes with the CAMs (ForwardBoth) and
   the scoring of both maps (`score_batch`, mostly `box_correctness`; its wall time). By
   default the scoring of a chunk runs in a thread while the next chunk is forwarded, its images
   in `--score-threads` threads (ncviz's default: 1 on the CPU) (`--score-threads 0`: inline,
   one after the other), so the two overlap and their sum can exceed the wall time per image;
4. the CPU per image (`--free-forward`: the host side alone), in the steady-state window, of each group of threads (the main thread,
   the scoring and measuring threads, native threads such as torch's OpenMP pool) and of the
   decode workers: where the cores go when `evaluate` is bound by its CPU side (on a GPU host).

    .venv/bin/python benchmarks/bench_evaluate.py [--images 64] [--batch-size 8]

With `--demo DATA` the shipped demo pair (the CLI's default models) scores the first `--images`
images of DATA, a folder that `ncviz make-data DATA --count 400` wrote (its `wsol` boxes and its
instance masks): the forward passes are cheap, so the host side of `evaluate` shows.

    .venv/bin/ncviz make-data /tmp/d400 --count 400
    .venv/bin/python benchmarks/bench_evaluate.py --demo /tmp/d400 --images 400 --bootstrap 0
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_batch import Rate, cpu_seconds, forward_limit, live_children_cpu, make_checkpoints, make_images  # noqa: E402


def write_wsol(root: Path, paths: list[Path], size: tuple[int, int], seed: int = 0) -> Path:
    """A `wsol` metadata folder for `paths` (labels in 0..999, 1-3 random boxes per image)."""
    rng = np.random.default_rng(seed)
    meta = root / "wsol"
    meta.mkdir()
    w, h = size
    ids, labels, sizes, boxes = [], [], [], []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        ids.append(rel)
        labels.append(f"{rel},{int(rng.integers(0, 1000))}")
        sizes.append(f"{rel},{w},{h}")
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            boxes.append(f"{rel},{x0},{y0},{int(rng.integers(x0 + 20, w))},{int(rng.integers(y0 + 20, h))}")
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes),
                        ("localization", boxes)):
        (meta / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return meta


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's live threads, grouped by name (Python threads by
    their name without the pool index; threads Python did not start, such as torch's OpenMP
    pool, numba's or OpenCV's, together as "native"), and of its live child processes (the
    decode workers)."""
    import re
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: re.sub(r"_\d+$", "", t.name) for t in threading.enumerate()}
    groups: dict[str, float] = {}
    for entry in Path("/proc/self/task").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        name = names.get(int(entry.name), "native (torch/OpenMP, numba, OpenCV)")
        groups[name] = groups.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    groups["decode workers"] = live_children_cpu()
    return groups


class Timer:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=None, help="decode workers (default: ncviz's)")
    p.add_argument("--arch", default="resnet101")
    p.add_argument("--bootstrap", type=int, default=100)
    p.add_argument("--score-threads", type=int, default=None, help="(default: ncviz's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--demo", default=None, metavar="DATA",
                   help="the shipped demo pair on DATA (a `ncviz make-data` folder) instead of generated "
                        "images and random --arch models")
    p.add_argument("--free-forward", action="store_true",
                   help="forward passes that cost nothing: the first batch's outputs are computed once and "
                        "handed out for every batch, so (2) and the CPU split are the host side alone")
    p.add_argument("--json", default=None, help="also write the main numbers to this JSON file")
    p.add_argument("--openmp-default", action="store_true",
                   help="leave OpenMP's wait policy to its runtime (spinning threads), instead of the passive "
                        "waits that the `ncviz` command chooses (nc_viz.core.threads)")
    args = p.parse_args(argv)
    from nc_viz.core.threads import prefer_passive_waits

    if not args.openmp_default:
        prefer_passive_waits()   # as the CLI does, before torch is imported
    import torch

    from nc_viz.pair import load_model_pair
    from nc_viz.models.inputs import load_batch
    from nc_viz.datasets import read_annotated
    from nc_viz.engine.workers import default_score_threads, default_workers, usable_cores
    from nc_viz.tasks.evaluate import EvalOptions, evaluate_dataset
    from nc_viz.tasks.evaluate import run as eval_run
    from nc_viz.tasks.evaluate import score as eval_score
    from nc_viz.metrics.boxes import box_correctness

    load = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory(prefix="ncviz-bench-eval-") as tmp:
        root = Path(tmp)
        if args.demo:
            pair = load_model_pair(device=args.device)
            dataset = read_annotated(args.demo, "ncviz", class_names=pair.baseline.meta.class_names)
            dataset.samples = dataset.samples[:args.images]
            paths = [sample.path for sample in dataset.samples]
            if len(paths) < args.images:
                p.error(f"{args.demo} has {len(paths)} images, fewer than --images {args.images}")
        else:
            paths = make_images(root / "images", args.images)
            ckpts = make_checkpoints(root, args.arch)
            pair = load_model_pair(ckpts[0], ckpts[1], device=args.device)
            dataset = read_annotated(write_wsol(root, paths, (320, 256)), "wsol", images=root,
                                     class_names=pair.baseline.meta.class_names)
        tensors = load_batch(paths, pair.preprocess)
        skipped = Rate(math.nan, math.nan)   # --free-forward: no forward pass to compare with
        before = skipped if args.free_forward else forward_limit(pair, tensors, args.batch_size, args.precision)
        ends: list[tuple[float, float]] = []
        real_forward = eval_score.ForwardBoth.__call__
        if args.free_forward:   # one batch's outputs, computed here, handed out again for every chunk
            options0 = EvalOptions(precision=args.precision)
            first = eval_score.EvalInputs(tensors[:args.batch_size],
                                          torch.tensor([s.label for s in dataset.samples[:args.batch_size]]))
            ready = real_forward(eval_score.ForwardBoth(pair, options0), first)

            def real_forward(self, x):  # noqa: F811 - the forward passes that cost nothing
                return {role: {name: value[:len(x)].clone() for name, value in out.items()}
                        for role, out in ready.items()}
        forward, scoring = Timer(real_forward), Timer(eval_run.score_batch)
        eval_score.ForwardBoth.__call__, eval_run.score_batch = (lambda self, x: forward(self, x)), scoring
        options = EvalOptions(batch_size=args.batch_size, workers=args.workers, bootstrap=args.bootstrap,
                          score_threads=args.score_threads, precision=args.precision)
        box_correctness(np.linspace(0, 1, 224 * 224).reshape(224, 224), np.array([[10, 10, 100, 100]]))
        start = time.perf_counter()   # (the box kernels were loaded, or compiled and cached, just above)
        samples: list[dict[str, float]] = []
        evaluation = evaluate_dataset(pair, dataset, options,
                                      on_batch=lambda n: (ends.append((time.perf_counter(), cpu_seconds())),
                                                          samples.append(thread_cpu())))
        wall = time.perf_counter() - start
        after = skipped if args.free_forward else forward_limit(pair, tensors, args.batch_size, args.precision)
    assert evaluation is not None and evaluation.images == args.images
    gaps = [b[0] - a[0] for a, b in zip(ends, ends[1:])]
    rate = args.batch_size / statistics.median(gaps)
    cpu_per_image = (ends[-1][1] - ends[0][1]) / (args.batch_size * (len(ends) - 1))
    limit = statistics.mean((before.per_second, after.per_second))
    per_image = {"forward + CAMs (ForwardBoth)": forward.seconds / args.images,
                 "scoring both maps (score_batch)": scoring.seconds / args.images}
    per_image["`evaluate` steady state (1 / (2))"] = 1 / rate
    workers = default_workers() if args.workers is None else args.workers
    threads = (default_score_threads(torch.device(args.device).type, workers) if args.score_threads is None
               else args.score_threads)
    print(f"`benchmarks/bench_evaluate.py {' '.join(argv if argv is not None else sys.argv[1:])}`: {args.images} "
          + (f"images of {args.demo}, the demo pair ({pair.baseline.meta.arch} + {pair.roles['nc'].meta.arch}, "
             f"{pair.preprocess.input_size} px)" if args.demo else
             f"images 320x256 -> 224 px, {args.arch} + {args.arch}_nc (random init)")
          + f", batch {args.batch_size}, "
          f"{args.device} {args.precision}, "
          f"{usable_cores()} cores, torch threads {torch.get_num_threads()}, decode workers {workers}, "
          f"score threads {threads}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY') or 'unset'}; "
          f"load average before / after: {load} / {os.getloadavg()[0]:.2f}")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| (1) forward passes alone, img/s (before / after) | {before.per_second:.2f} / {after.per_second:.2f} |")
    print(f"| (2) `evaluate` with box metrics, steady state, img/s | {rate:.2f} |")
    print(f"| **ratio to (1)**, wall clock | **{rate / limit:.2f}** |")
    print(f"| CPU ms per image: forward alone / `evaluate` | {before.cpu_per_image * 1000:.1f} / "
          f"{cpu_per_image * 1000:.1f} |")
    print(f"| `evaluate` wall time with start-up and bootstrap ({args.bootstrap}), s | {wall:.1f} |")
    for name, seconds in per_image.items():
        print(f"| (3) {name}, ms per image | {seconds * 1000:.0f} |")
    window = args.batch_size * (len(samples) - 1)   # the same steady-state window as the CPU s per image
    by_thread = {name: (samples[-1][name] - samples[0].get(name, 0.0)) * 1000 / window for name in samples[-1]}
    print("| CPU ms per image by thread, steady state | "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(by_thread.items(), key=lambda kv: -kv[1])) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "forward_alone": limit, "evaluate": rate, "ratio": rate / limit, "wall_s": wall,
            "cpu_ms_per_image": cpu_per_image * 1000, "cpu_ms_per_image_by_thread": by_thread,
            "per_image_ms": {name: seconds * 1000 for name, seconds in per_image.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
