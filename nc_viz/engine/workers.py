"""Default parallelism: decode workers and render threads from the usable cores."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decode workers: half the cores (1 on a 2-core machine), at most 8."""
    return max(1, min(8, usable_cores() // 2))


def default_score_threads(device_type: str, workers: int) -> int:
    """Threads that score `evaluate`'s maps: 1 on the CPU, where the forward passes need the
    cores; on an accelerator, this process's share of the cores (torchrun's LOCAL_WORLD_SIZE
    processes share them) less its decode workers, at least 1."""
    if device_type == "cpu":
        return 1
    try:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_ranks = 1
    return max(1, usable_cores() // local_ranks - workers)


def default_render_threads() -> int:
    """Render + encode threads: one per core, at most 8. Composing and deflating run mostly
    outside Python's lock, so on a 2-core machine two threads drew 61-69 neurons figures/s
    against 51-54 with one (benchmarks/bench_host.py)."""
    return max(1, min(8, usable_cores()))


# What one multiply-add of a forward pass and one panel pixel of a PNG figure cost on one CPU
# core (2-core machine, the demo pair at 64 px: 99.5 M multiply-adds in 2.6 ms; a neurons
# figure, 18 panels of 224 px, drawn, encoded and written in 15.7 ms; benchmarks/bench_host.py).
# Only their ratio matters for the split.
SECONDS_PER_MULTIPLY_ADD = 2.6e-3 / 99.5e6
SECONDS_PER_PANEL_PIXEL = 15.7e-3 / (18 * 224 * 224)


def forward_threads(cores: int, multiply_adds: int, panel_pixels: int) -> int:
    """torch threads for `batch`'s forward passes on a CPU, where render threads share the
    `cores`: the cores in proportion to the two works per image (forward: `multiply_adds` of
    both models; drawing: the figure's `panel_pixels`), at least 1.

    A small model (the demo pair) then runs its forward passes on one thread, which costs less
    CPU per image than a team of threads waiting on each other, and leaves the other cores to
    drawing; a large one (ResNet-101) keeps every core. The count follows from the model and
    the layout alone, never from timings, so that a rerun splits the cores the same way (a
    model's outputs may differ in the last bits with the thread count).
    """
    forward = multiply_adds * SECONDS_PER_MULTIPLY_ADD
    drawing = panel_pixels * SECONDS_PER_PANEL_PIXEL
    if cores <= 1 or forward + drawing <= 0:
        return max(1, cores)
    return max(1, min(cores, round(cores * forward / (forward + drawing))))
