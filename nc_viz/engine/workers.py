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
