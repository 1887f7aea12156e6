"""How the process's thread pools wait and how it keeps memory: set once, at the CLI's start.

torch's CPU kernels run in an OpenMP team. By default GNU OpenMP (the runtime of torch's Linux
wheels) keeps the team's threads spinning between parallel regions. Where other threads share
the cores (decode workers, scoring and render threads, other users of the machine), the
spinning threads take the cores the others need, and a team waits at its barrier for a thread
that is not running: on a shared 2-core machine `ncviz evaluate` with the demo pair spent about
30-70 CPU ms per image this way against 9-11 with passive waits, and ran five times slower
(benchmarks/README.md). Passive waits change no number: the same kernels split the same way.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waits() -> bool:
    """Make idle OpenMP threads sleep instead of spin (`OMP_WAIT_POLICY=PASSIVE`), unless the
    environment already chooses a policy. The runtime reads it when torch loads it, so this only
    takes effect before torch is first imported; returns whether it did (child processes, such
    as decode workers, inherit the setting either way)."""
    if os.environ.get(WAIT_POLICY):
        return False
    os.environ[WAIT_POLICY] = "PASSIVE"
    if "torch" in sys.modules:
        log.debug("%s=PASSIVE set after torch was imported: this process keeps its default", WAIT_POLICY)
        return False
    return True


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP_BYTES = 64 << 20


def keep_large_allocations(keep: int = KEEP_BYTES) -> bool:
    """Serve allocations up to `keep` bytes from the heap and keep freed memory for reuse
    (glibc only; returns whether it applied).

    A folder run allocates the same few megabytes for every figure (the canvas, the filtered
    rows, the deflated data, resized panels). By default glibc maps each such block afresh and
    unmaps it when freed, so every figure pays its page faults again: on this 2-core machine
    about a third of `batch`'s CPU time went to the kernel. Heap blocks are reused instead, and
    the heap stays bounded by what one batch needs at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, keep)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 4 * keep))
    except (OSError, AttributeError):
        return False
