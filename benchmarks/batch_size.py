"""Which batch size feeds the two forward passes best: images/s of the forward passes alone.

Builds a randomly initialised ARCH and ARCH_nc (as `bench_batch.py` does) and times both models'
forward passes alone at each batch size, on the same generated images, in one run; prints a
markdown table. This is how the CLI's default `--batch-size` per device was chosen (see
benchmarks/README.md, "Default batch size").

    .venv/bin/python benchmarks/batch_size.py --sizes 4,8,16 --images 96
    python3 benchmarks/batch_size.py --device cuda --precision bf16 --sizes 16,32,64,128,256 --images 1024
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="4,8,16", help="comma-separated batch sizes")
    p.add_argument("--images", type=int, default=96, help="generated images (each size runs over all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--arch", default="resnet101", help="baseline arch; the NC model is ARCH_nc")
    p.add_argument("--rounds", type=int, default=2, help="passes over the sizes (interleaved, against drift)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench_batch import forward_limit, make_checkpoints, make_images

    from nc_viz.pair import load_model_pair
    from nc_viz.models.inputs import load_batch

    sizes = [int(s) for s in args.sizes.split(",") if s]
    rates: dict[int, list[float]] = {s: [] for s in sizes}
    with tempfile.TemporaryDirectory(prefix="ncviz-bs-") as tmp:
        root = Path(tmp)
        paths = make_images(root / "images", args.images)
        ckpts = make_checkpoints(root, args.arch)
        pair = load_model_pair(ckpts[0], ckpts[1], device=args.device)
        tensors = load_batch(paths, pair.preprocess)
        for _ in range(args.rounds):
            for size in sizes:
                rates[size].append(forward_limit(pair, tensors, size, args.precision).per_second)
    print(f"`benchmarks/batch_size.py {' '.join(argv if argv is not None else sys.argv[1:])}`: "
          f"{args.arch} + {args.arch}_nc forward passes alone, {args.device}, {args.precision}, "
          f"{args.images} images, {args.rounds} rounds")
    print()
    print("| batch size | img/s per round | best |")
    print("|---|---|---|")
    for size in sizes:
        print(f"| {size} | {' / '.join(f'{r:.1f}' for r in rates[size])} | {max(rates[size]):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
