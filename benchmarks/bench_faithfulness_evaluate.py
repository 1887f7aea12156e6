"""Forward images per second inside `ncviz evaluate --faithfulness deletion,insertion` against the
plain forward-only rate of the same models (the cost target: >= 0.8 on a CPU, small model).

On the shipped demo pair (ResNet-20 / ResNet-20-NC at 64 px) and generated held-out images: (1) both
models' forward passes alone on batches of `--batch-size` perturbed-size inputs, images/s; (2)
`evaluate_dataset` with deletion and insertion at RISE's resolution, every forward image counted by
a hook on each model, divided by the run's wall time (decoding, CAMs, scoring and the bootstrap
included) and, second, by the time from the start of the first forward pass to the end of the last
(the set-up before and the bootstrap after left out). Prints a markdown table.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_faithfulness_evaluate.py --images 24
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def forward_rate(pair, size: int, batch: int, rounds: int = 6) -> float:
    """Images/s of both models' plain forward passes (per model image), after one warm-up batch."""
    import torch

    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        for model in (loaded.model for loaded in pair.roles.values()):
            model(x)
        start = time.perf_counter()
        for _ in range(rounds):
            for model in (loaded.model for loaded in pair.roles.values()):
                model(x)
    return 2 * rounds * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64, help="forward images per pass (the metric's default)")
    args = parser.parse_args(argv)
    from nc_viz.pair import load_model_pair
    from nc_viz.cli import main as cli
    from nc_viz.datasets import read_annotated
    from nc_viz.tasks.evaluate import EvalOptions, evaluate_dataset

    pair = load_model_pair(device="cpu")
    counted, span = [0], []  # span: perf_counter at the start of the first and the end of the last pass

    def count(_module, inputs) -> None:
        counted[0] += len(inputs[0])
        span[:1] = span[:1] or [time.perf_counter()]

    def ended(_module, _inputs, _output) -> None:
        span[1:] = [time.perf_counter()]

    for model in (loaded.model for loaded in pair.roles.values()):
        model.register_forward_pre_hook(count)
        model.register_forward_hook(ended)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d"
        cli(["make-data", str(data), "--count", str(args.images), "--seed", "3"])
        dataset = read_annotated(data, "ncviz")
        before = forward_rate(pair, pair.preprocess.input_size, args.batch_size)
        counted[0] = 0
        span.clear()
        start = time.perf_counter()
        evaluate_dataset(pair, dataset, EvalOptions(faithfulness=("deletion", "insertion"), workers=0, bootstrap=100))
        wall = time.perf_counter() - start
        images, passes = counted[0], span[1] - span[0]  # read before the second forward_rate counts too
        inside, between = images / wall, images / passes
        after = forward_rate(pair, pair.preprocess.input_size, args.batch_size)
    limit = (before + after) / 2
    print(f"`benchmarks/bench_faithfulness_evaluate.py --images {args.images} --batch-size {args.batch_size}`: "
          f"demo pair (resnet20 / resnet20_nc, {pair.preprocess.input_size} px), CPU")
    print()
    print("| measure | value |\n|---|---|")
    print(f"| plain forward passes, images/s (before / after) | {before:.0f} / {after:.0f} |")
    print(f"| forward images inside `evaluate --faithfulness deletion,insertion` | {images} in {wall:.1f} s |")
    print(f"| forward images/s inside evaluate | {inside:.0f} |")
    print(f"| **ratio**, whole run | **{inside / limit:.2f}** |")
    print(f"| forward images/s from the first forward pass to the last | {between:.0f} "
          f"({passes:.1f} s) |")
    print(f"| **ratio**, first to last forward pass | **{between / limit:.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
