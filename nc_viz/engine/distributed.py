"""torchrun shards: every rank takes `items[rank::world]`; small picklable per-rank results
(records, accumulator states, failures) are gathered over a gloo group."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..core.errors import NcVizError, first_line


@dataclass(frozen=True)
class Shard:
    """This process's rank among `world` (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Shard:
        env = os.environ
        shard = cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
        if not 0 <= shard.rank < shard.world:
            raise NcVizError(f"RANK={shard.rank} is outside WORLD_SIZE={shard.world}")
        return shard

    def take(self, items: Sequence[Any]) -> list[Any]:
        """This rank's shard of `items`: every world-th item from `rank`."""
        return list(items[self.rank::self.world])


@contextmanager
def process_group(shard: Shard) -> Iterator[None]:
    """A gloo group for the ranks' summaries (only small Python objects travel)."""
    import torch.distributed as dist

    if shard.world == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather_parts(part: Any, shard: Shard, failure: BaseException | None = None) -> list[Any]:
    """Every rank's `part` (any picklable object), in rank order; every rank gets them all.

    A rank whose work raised still takes part, with its error, so that no rank waits for it
    forever; then the failed rank raises its own error and every other rank names it.
    """
    if shard.world == 1:
        if failure is not None:
            raise failure
        return [part]
    import torch.distributed as dist

    parts: list[Any] = [None] * shard.world
    dist.all_gather_object(parts, (part, None if failure is None else first_line(failure)))
    if failure is not None:
        raise failure
    failed = [(rank, reason) for rank, (_, reason) in enumerate(parts) if reason is not None]
    if failed:
        rank, reason = failed[0]
        raise NcVizError(f"rank {rank} of {shard.world} failed: {reason}")
    return [p for p, _ in parts]


def gather_outcomes(part: Any, shard: Shard, failure: BaseException | None = None) -> list[tuple[Any, str | None]]:
    """Every rank's `(part, None)`, or `(None, reason)` for a rank whose work raised, in rank
    order; every rank gets them all and nothing is raised, so that rank 0 can still report what
    the other ranks did (the caller raises afterwards)."""
    reason = None if failure is None else first_line(failure)
    if shard.world == 1:
        return [(part if failure is None else None, reason)]
    import torch.distributed as dist

    outcomes: list[Any] = [None] * shard.world
    dist.all_gather_object(outcomes, (part if failure is None else None, reason))
    return [tuple(outcome) for outcome in outcomes]


def rank_failure(outcomes: Sequence[tuple[Any, str | None]], shard: Shard) -> NcVizError | None:
    """The error that a rank other than the failed one raises: it names the first failed rank."""
    failed = [(rank, reason) for rank, (_, reason) in enumerate(outcomes) if reason is not None]
    if not failed:
        return None
    rank, reason = failed[0]
    return NcVizError(f"rank {rank} of {shard.world} failed: {reason}")


def gather_records(records: dict[int, dict[str, Any]], shard: Shard,
                   failure: BaseException | None = None) -> dict[int, dict[str, Any]]:
    """Every rank's records, merged (every rank gets them, so all agree on the exit status)."""
    merged: dict[int, dict[str, Any]] = {}
    for part in gather_parts(records, shard, failure):
        merged.update(part)
    return merged


def barrier(shard: Shard) -> None:
    """Wait for every rank (a no-op in a one-process run)."""
    if shard.world > 1:
        import torch.distributed as dist

        dist.barrier()
