"""Cost of RISE deletion + insertion (`nc_viz.metrics.faithfulness.deletion_insertion`) per image.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/faithfulness_cost.py [--arch resnet20] [--size 112]
        [--images 4] [--batch-size 64] [--steps 32] [--device cpu|cuda] [--precision fp32|bf16|fp16]

One randomly initialised model (10 classes) at S x S, random normalised images and random smooth
maps (7 x 7 noise resized bilinearly). Measured in one run, in this order:
1. the plain forward rate of the model at `--batch-size` (forward images per second, the median
   of 5 passes after a warm-up): the limit;
2. deletion + insertion at RISE's full resolution (S pixels per step: S + 1 points per curve);
3. the same with `--steps N` (N + 1 points per curve);
4. the limit again, so that drift from other work on the machine shows.
Forward images are counted by a hook on the model (rows of every batch it sees). Prints a markdown
table: forward images per image, seconds per image, forward images per second and its ratio to the
mean of the two limits.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nc_viz.metrics.faithfulness import deletion_insertion  # noqa: E402
from nc_viz.models import build_model  # noqa: E402

log = logging.getLogger("faithfulness_cost")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class ForwardCounter:
    """Counts the images (batch rows) that go through a model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.images = 0
        self.handle = model.register_forward_pre_hook(self._count)

    def _count(self, _module: torch.nn.Module, args: tuple) -> None:
        self.images += int(args[0].shape[0])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_rate(model: torch.nn.Module, batch: int, size: int, device: torch.device,
                 dtype: torch.dtype | None) -> float:
    """Forward images per second at `batch`: median of 5 timed passes after one warm-up."""
    x = torch.randn(batch, 3, size, size, device=device)
    times = []
    with torch.no_grad(), (torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()):
        for i in range(6):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def timed_run(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
              steps: int | None, batch: int, dtype: torch.dtype | None) -> tuple[float, int, int]:
    """(seconds, forward images, points per curve) of deletion + insertion on the batch."""
    counter = ForwardCounter(model)
    _sync(x.device)
    t0 = time.perf_counter()
    out = deletion_insertion(model, x, maps, target, steps, batch_size=batch, autocast=dtype)
    _sync(x.device)
    seconds = time.perf_counter() - t0
    counter.handle.remove()
    return seconds, counter.images, int(out["steps"]) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device, dtype = torch.device(args.device), PRECISIONS[args.precision]
    torch.manual_seed(0)
    model = build_model(args.arch, 10, input_size=args.size).eval().to(device)
    x = torch.randn(args.images, 3, args.size, args.size, device=device)
    maps = torch.nn.functional.interpolate(torch.rand(args.images, 1, 7, 7), size=(args.size, args.size),
                                           mode="bilinear", align_corners=False)[:, 0].to(device)
    target = torch.randint(0, 10, (args.images,), device=device)
    limit_before = forward_rate(model, args.batch_size, args.size, device, dtype)
    runs = {label: timed_run(model, x, maps, target, steps, args.batch_size, dtype)
            for label, steps in (("full (RISE: S px per step)", None), (f"--steps {args.steps}", args.steps))}
    limit_after = forward_rate(model, args.batch_size, args.size, device, dtype)
    limit = (limit_before + limit_after) / 2
    threads = torch.get_num_threads()
    log.info("`benchmarks/faithfulness_cost.py --arch %s --size %d --images %d --batch-size %d --steps %d "
             "--device %s --precision %s`: random init, 10 classes, %d torch threads, OMP_NUM_THREADS=%s",
             args.arch, args.size, args.images, args.batch_size, args.steps, args.device, args.precision,
             threads, os.environ.get("OMP_NUM_THREADS", "unset"))
    log.info("\nplain forward, img/s (before / after): %.1f / %.1f\n", limit_before, limit_after)
    log.info("| deletion + insertion | points per curve | forward images per image | s per image "
             "| forward img/s | ratio to plain forward |")
    log.info("|---|---|---|---|---|---|")
    for label, (seconds, images, points) in runs.items():
        rate = images / seconds
        log.info("| %s | %d | %d | %.3f | %.1f | %.2f |", label, points, images // args.images,
                 seconds / args.images, rate, rate / limit)


if __name__ == "__main__":
    main()
