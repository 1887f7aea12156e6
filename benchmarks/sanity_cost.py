"""Cost of `ncviz sanity` (`nc_viz.tasks.sanity.sanity_dataset`) per image and step, against the
forward passes alone.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sanity_cost.py [--arch resnet18] [--size 112]
        [--images 8] [--batch-size 8] [--method cam] [--mode cascading] [--granularity block]
        [--device cpu|cuda] [--precision fp32|bf16|fp16]

A randomly initialised ARCH and ARCH_nc (10 classes), saved as checkpoints in a temporary folder
and loaded as a pair, random PNG images at S x S. Measured in one run, in this order:
1. the limit: the forward passes the test needs, alone (per image and model: one for the
   original map and one per step that randomises that model), at the same batch size, on
   images already on the device, the median of 3 timed rounds after a warm-up;
2. `sanity_dataset` on the images (decode, randomisation, maps, upsampling, the four similarity
   measures), one warm-up run on the first batch first;
3. the limit again, so that drift from other work on the machine shows.
Prints a markdown table: steps, forward passes per image (both models), seconds per image and
step for each, and the ratio of the two (the limit over the mean of its two measurements).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nc_viz.cams.compute import compute_cams  # noqa: E402
from nc_viz.core.constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from nc_viz.datasets import read_annotated  # noqa: E402
from nc_viz.models import build_model  # noqa: E402
from nc_viz.models.checkpoints import ModelMeta, save_checkpoint  # noqa: E402
from nc_viz.models.preprocessing import Preprocess  # noqa: E402
from nc_viz.pair import autocast_dtype, load_model_pair  # noqa: E402
from nc_viz.tasks.sanity import SanityOptions, sanity_dataset  # noqa: E402
from nc_viz.tasks.sanity.run import pair_schedule  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_limit(pair, passes: dict[str, int], images: int, batch: int, method: str, precision: str) -> float:
    """Seconds per image of the forward passes alone: `passes[role]` map computations per image."""
    size = pair.preprocess.input_size
    x = torch.randn(batch, 3, size, size, device=pair.device)
    dtype = autocast_dtype(precision)

    def one_round() -> float:
        _sync(pair.device)
        start = time.perf_counter()
        for role, count in passes.items():
            for _ in range(count):
                compute_cams(pair.roles[role].model, x, None, method, autocast=dtype)
        _sync(pair.device)
        return (time.perf_counter() - start) / batch

    one_round()
    return statistics.median(one_round() for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--method", default="cam")
    parser.add_argument("--mode", default="cascading", choices=("cascading", "independent"))
    parser.add_argument("--granularity", default="block", choices=("block", "layer"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for seed, arch in enumerate((args.arch, f"{args.arch}_nc")):
            torch.manual_seed(seed)
            model = build_model(arch, 10, input_size=args.size)
            meta = ModelMeta(arch=arch, num_classes=10, reduction=8 if seed else None, placement="stages" if seed else None,
                             preprocess=Preprocess(args.size, IMAGENET_MEAN, IMAGENET_STD, crop_pct=1.0))
            paths.append(save_checkpoint(folder / f"{arch}.pt", model, meta))
        rng = np.random.default_rng(0)
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
        pair = load_model_pair(*paths, device=args.device)
        samples = read_annotated(folder, "images").samples
        steps = pair_schedule(pair, args.granularity)
        passes = {role: 1 + sum(1 for s in steps if s.layers[role]) for role in pair.roles}
        options = SanityOptions(method=args.method, mode=args.mode, granularity=args.granularity, workers=0,
                                batch_size=args.batch_size, precision=args.precision, bootstrap=0)
        before = forward_limit(pair, passes, args.images, args.batch_size, args.method, args.precision)
        sanity_dataset(pair, samples[:args.batch_size], options)   # warm-up
        start = time.perf_counter()
        sanity_dataset(pair, samples, options)
        _sync(pair.device)
        per_image = (time.perf_counter() - start) / args.images
        after = forward_limit(pair, passes, args.images, args.batch_size, args.method, args.precision)
    limit = (before + after) / 2
    k = len(steps)
    print(f"{args.arch} + {args.arch}_nc at {args.size} px, {args.images} images, batch {args.batch_size}, "
          f"{args.method}, {args.mode}, {args.granularity}: {k} steps, forward passes per image "
          f"{passes['baseline']} + {passes['nc']}, device {args.device}, {args.precision}, "
          f"torch threads {torch.get_num_threads()}\n")
    print("| measure | s per image | s per image and step | ratio to the forward passes alone |")
    print("|---|---|---|---|")
    print(f"| forward passes alone (before / after) | {before:.3f} / {after:.3f} | {limit / k:.4f} | 1 |")
    print(f"| `sanity_dataset` | {per_image:.3f} | {per_image / k:.4f} | {per_image / limit:.2f} |")


if __name__ == "__main__":
    main()
