"""The device side: batched forward passes that halve the batch on a CUDA out-of-memory
error, and the device of a torchrun rank."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sized
from typing import Any, Generic, Protocol, TypeVar

import torch

from ..core.errors import NcVizError, first_line
from .distributed import Shard

log = logging.getLogger(__name__)

R = TypeVar("R")


class Sliceable(Sized, Protocol):
    """A batch: a tensor, or anything with a length that slices along its first axis."""

    def __getitem__(self, index: slice) -> Any: ...


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error."""
    return isinstance(exc, torch.cuda.OutOfMemoryError)


class AdaptiveForward(Generic[R]):
    """Runs batches through `run`; an out-of-memory error halves the batch and retries.

    The smaller size is kept for the rest of the run. At batch size 1 the error is final.
    """

    def __init__(self, run: Callable[[Any], R], batch_size: int,
                 on_oom: Callable[[], None] | None = None) -> None:
        self.run = run
        self.limit = batch_size
        self.on_oom = on_oom or _free_cuda_cache

    def __call__(self, x: Sliceable) -> Iterator[tuple[int, R]]:
        """Yield (offset into x, result of x[offset:offset + n]) until all of x is done."""
        start = 0
        while start < len(x):
            chunk = x[start:start + self.limit]
            try:
                result = self.run(chunk)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._shrink(len(chunk), exc)
                continue
            yield start, result
            start += len(chunk)

    def _shrink(self, size: int, exc: BaseException) -> None:
        if size <= 1:
            raise NcVizError(f"out of memory even at batch size 1: {first_line(exc)}") from exc
        self.limit = max(1, size // 2)
        log.warning("out of memory at batch size %d: retrying at %d", size, self.limit)
        self.on_oom()


def _free_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def rank_device(device: str, shard: Shard) -> str:
    """Under torchrun, `auto`/`cuda` means this rank's own GPU (LOCAL_RANK)."""
    if shard.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{shard.local_rank}"
    return device
