"""The streaming loop both `batch` and `evaluate` drive: decoded batches from DataLoader
workers are handed, in order, to a consumer that runs the forward passes and does its own
work (write figures, accumulate metrics); the decode workers are always stopped, also on an
error or Ctrl-C, after the consumer has closed what it has in flight."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class Consumer(Protocol):
    """What the stream hands its batches to."""

    def consume(self, batch: Any) -> None:
        """One decoded batch (its failures included), in the order of the inputs."""

    def drain(self) -> None:
        """Every batch has been handed over: finish the work still in flight."""

    def close(self) -> None:
        """Always called last (also after an error or Ctrl-C): cancel or settle what is pending."""


def stop_workers(loader: Iterator[Any]) -> None:
    """Stop a DataLoader iterator's worker processes now (a no-op without workers)."""
    shutdown = getattr(loader, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def run_stream(loader: Iterable[Any], consumer: Consumer) -> None:
    """Decode -> consumer, batch by batch, with a clean shutdown whatever happens (a batch the
    workers could not hand over stops the run: NcVizError, one line)."""
    from ..core.errors import NcVizError
    from .decode import WorkerFailure

    batches: Iterator[Any] | None = None
    try:
        batches = iter(loader)  # starts the decode workers, which may fail: the consumer still closes
        for batch in batches:
            if isinstance(batch, WorkerFailure):
                raise NcVizError(batch.reason)
            consumer.consume(batch)
        consumer.drain()
    finally:
        try:
            consumer.close()
        finally:
            if batches is not None:
                stop_workers(batches)

