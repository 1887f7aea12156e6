"""Batch results handed to render processes through shared memory, not pickled arrays.

With `render_pool="process"` the figures are drawn in processes of their own, each with its
own Python lock, so that drawing spreads over the cores of a GPU host. Each forward pass's
`PairResult` is copied once into one of a ring of shared-memory slots (one copy per array, made
outside Python's lock); a task then carries only the slot's number, where each array lies in
it (`Leaf`) and the image's index. A slot is reused only when every figure drawn from it is
done. The slots are torch tensors in shared memory, handed to the processes once, when they
start; they go away with the last process that holds them.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...core.errors import ParameterFailure, first_line
from ...pair import PairResult, map_leaves

log = logging.getLogger(__name__)
ALIGN = 64  # bytes: where each array of a slot starts


@dataclass(frozen=True)
class Leaf:
    """Where one array of a packed batch lies in its slot, and how to rebuild it."""

    offset: int
    dtype: str                 # numpy dtype name
    shape: tuple[int, ...]     # images first
    tensor: bool               # rebuilt as a torch tensor (else a numpy array)


def _for_drawing(result: PairResult) -> PairResult:
    """`result` without what no figure draws: the models' input (pictures show what they saw)."""
    return dataclasses.replace(result, inputs=result.inputs[:, :0].float())


def packed_size(result: PairResult, images: int) -> int:
    """Bytes a slot needs for `images` images of results shaped like `result` (a batch of any size)."""
    leaves: list[Any] = []
    map_leaves(_for_drawing(result), leaves.append)
    per_image = sum(leaf.nbytes // max(len(leaf), 1) for leaf in leaves)
    return per_image * images + ALIGN * (len(leaves) + 1)


def pack(result: PairResult, slot: torch.Tensor) -> Any:
    """Copy the arrays of `result` into `slot` (uint8, shared); returns its skeleton: `result`
    with a `Leaf` in place of each array. None when it does not fit, or holds a tensor of a type
    numpy has not (bfloat16)."""
    memory = slot.numpy()
    offset = 0
    fits = True
    placed: list[tuple[np.ndarray, np.ndarray]] = []

    def place(value: Any) -> Leaf | None:
        nonlocal offset, fits
        if isinstance(value, torch.Tensor):
            try:
                array = value.detach().numpy()
            except TypeError:  # a dtype numpy lacks (bfloat16)
                fits = False
                return None
        else:
            array = value
        array = np.ascontiguousarray(array)
        start = -(-offset // ALIGN) * ALIGN
        offset = start + array.nbytes
        fits = fits and offset <= len(memory)
        if fits:
            placed.append((array, memory[start:offset]))
        return Leaf(start, array.dtype.str, array.shape, isinstance(value, torch.Tensor))

    skeleton = map_leaves(_for_drawing(result), place)
    if not fits:
        return None
    for array, target in placed:
        np.copyto(target.view(array.dtype).reshape(array.shape), array)
    return skeleton


def unpack(skeleton: Any, slot: torch.Tensor, index: int) -> PairResult:
    """Image `index` of a packed batch as a one-image PairResult whose arrays are views of `slot`."""
    memory = slot.numpy()

    def view(leaf: Leaf) -> Any:
        count = int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        array = memory[leaf.offset:leaf.offset + count].view(np.dtype(leaf.dtype)).reshape(leaf.shape)
        array = array[index:index + 1]
        return torch.from_numpy(array) if leaf.tensor else array

    return map_leaves(skeleton, view, lambda value: isinstance(value, Leaf))


# ----------------------------------------------------------------------------- the processes

_SLOTS: list[torch.Tensor] = []  # in a render process: the ring, from `_start_render_process`


def _start_render_process(slots: list[torch.Tensor]) -> None:
    """A render process leaves Ctrl-C to the main process, draws on one torch thread, and keeps
    the ring of slots."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _SLOTS[:] = slots


def _draw_from_slot(draw: Callable[..., Any], skeleton: Any, slot: int, index: int, *args: Any) -> Any:
    """In a render process: `draw(image index of slot, *args)`."""
    return draw(unpack(skeleton, _SLOTS[slot], index), *args)


SHM_FOLDER = "/dev/shm"  # where torch's shared memory lives (Linux)


def _check_room(needed: int) -> None:
    """OSError unless the shared-memory folder has room for `needed` bytes and as much again:
    the decode workers hand their batches over through it too."""
    try:
        stats = os.statvfs(SHM_FOLDER)
    except (OSError, AttributeError):  # no such folder (not Linux): torch says when it has no room
        return
    free = stats.f_bavail * stats.f_frsize
    if 2 * needed > free:
        raise OSError(errno.ENOSPC, f"{SHM_FOLDER} has {free / 1e6:.0f} MB free, {2 * needed / 1e6:.0f} MB wanted")


def _warm_forkserver() -> None:
    """Start the forkserver now, importing what a render process needs, while the models load and
    the first batch is forwarded: each render process is then a fork of a server that has torch
    and ncviz imported, and starts at once."""
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__, "nc_viz.tasks.batch.figures"])
    forkserver.ensure_running()


class SharedRenderPool:
    """A process pool fed through a ring of shared-memory slots (see the module's docstring).

    The ring is made on the first batch, sized for `batch_size` images like it and enough
    slots for `max_pending` figures in flight (`slot_plan`). `submit_batch` packs a result once
    and submits `draw(image i, *per_image[i])` for each image; it blocks, calling `wait_one()`,
    until a slot is free. A batch that does not fit its slot goes pickled instead.
    """

    def __init__(self, processes: int, batch_size: int, max_pending: int,
                 fallback: Callable[[], Executor] | None = None) -> None:
        self.processes, self.batch_size, self.max_pending = processes, batch_size, max_pending
        self.fallback = fallback  # the pool to use when the slots cannot be made (else an error)
        self.slots: list[torch.Tensor] = []
        self.users: list[list[Future]] = []
        self.pool: Executor | None = None
        _warm_forkserver()

    def _start(self, result: PairResult) -> Executor:
        size = packed_size(result, self.batch_size)
        count = slot_plan(self.batch_size, self.max_pending)
        try:
            _check_room(count * size)
            self.slots = [torch.empty(size, dtype=torch.uint8).share_memory_() for _ in range(count)]
        except (RuntimeError, OSError) as exc:  # e.g. a small /dev/shm in a container
            why = f"no room for {count} shared-memory slots of {size / 1e6:.0f} MB ({first_line(exc)})"
            if self.fallback is None:
                raise ParameterFailure("render_pool", f"{{param}} process: {why}; use {{param}} thread or a "
                                                      f"smaller {{param:batch_size}}") from exc
            log.warning("drawing in threads: %s", why)
            self.slots = []
            self.pool = self.fallback()
            return self.pool
        self.users = [[] for _ in range(count)]
        self.pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("forkserver"),
                                        initializer=_start_render_process, initargs=(self.slots,))
        return self.pool

    def _free_slot(self, wait_one: Callable[[], None]) -> int:
        while True:
            for number, futures in enumerate(self.users):
                if all(f.done() for f in futures):
                    futures.clear()
                    return number
            wait_one()

    def submit_batch(self, result: PairResult, draw: Callable[..., Any], per_image: list[tuple[Any, ...]],
                     wait_one: Callable[[], None]) -> list[Future]:
        pool = self.pool or self._start(result)
        if not self.slots:  # the fallback's threads share this process's memory
            return [pool.submit(draw, result.images(i), *args) for i, args in enumerate(per_image)]
        number = self._free_slot(wait_one)
        skeleton = pack(result, self.slots[number])
        if skeleton is None:  # larger than the slots sized on the first batch
            return [pool.submit(draw, result.images(i, copy=True), *args) for i, args in enumerate(per_image)]
        futures = [pool.submit(_draw_from_slot, draw, skeleton, number, i, *args) for i, args in enumerate(per_image)]
        self.users[number].extend(futures)
        return futures

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Shut the processes down; the slots are let go (their memory goes with the last holder)."""
        try:
            if self.pool is not None:
                self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        finally:
            self.slots, self.users = [], []


def slot_plan(batch_size: int, max_pending: int) -> int:
    """Slots for a ring that never makes the writer wait while fewer than `max_pending`
    figures are in flight: the batches those figures can span, plus the one being packed."""
    return -(-max_pending // max(batch_size, 1)) + 2
