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


def default_render_threads() -> int:
    """Render + encode threads: half the cores, at most 8."""
    return max(1, min(8, usable_cores() // 2))
