"""Decoding in DataLoader workers: one item per file, a failure is returned as that item's
error, never raised, so one bad file never stops a run.

A worker dies with the process that started it (Linux: PR_SET_PDEATHSIG), so a run killed
with SIGKILL leaves no decoder behind. A batch that cannot be handed over (no room for the
shared memory that carries it: a full /dev/shm, a file-size limit) becomes a `WorkerFailure`
that stops the run in one line (`engine.stream`), instead of a worker's traceback and a hang.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..models.inputs import load_image
from ..models.preprocessing import Preprocess
from ..core.errors import first_line
from ..core.names import display_name

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1          # linux/prctl.h
SHM_FOLDER = Path("/dev/shm")   # where torch's shared memory files live (Linux)


@dataclass
class Sample:
    """One decoded image (`x`) or the reason it could not be decoded (`error`)."""

    position: int
    x: torch.Tensor | None = None
    error: str | None = None
    size: tuple[int, int] = (0, 0)  # the decoded image's (width, height)


def error_reason(exc: BaseException, path: Path) -> str:
    """The message of `exc` without the leading `PATH: ` that ImageError carries (a path with
    a newline in it shown escaped, so that the reason stays whole and on one line)."""
    shown = display_name(str(path))
    return first_line(ValueError(str(exc).replace(str(path), shown))).removeprefix(f"{shown}: ")


class ImageFileDataset(torch.utils.data.Dataset):
    """Decodes and preprocesses one file per item; failures are returned, not raised."""

    def __init__(self, paths: Sequence[Path], preprocess: Preprocess) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> Sample:
        path = self.paths[position]
        try:
            image = load_image(path)
            return Sample(position, x=self.preprocess.to_tensor(image), size=image.size)
        except Exception as exc:  # noqa: BLE001 - a bad file is reported and skipped, never fatal
            return Sample(position, error=error_reason(exc, path))


@dataclass
class LoadedBatch:
    """Collated samples: the good ones stacked, the failures kept aside."""

    positions: list[int]
    x: torch.Tensor | None
    failures: list[tuple[int, str]]
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of the good ones

    def pin_memory(self) -> LoadedBatch:
        """Called by the DataLoader's pinning thread (CUDA only)."""
        return replace(self, x=None if self.x is None else self.x.pin_memory())


def collate_samples(samples: Sequence[Sample]) -> LoadedBatch:
    """Stack the decoded samples; failures go to `failures`."""
    good = [s for s in samples if s.x is not None]
    failures = [(s.position, s.error or "unknown error") for s in samples if s.x is None]
    x = torch.stack([s.x for s in good]) if good else None
    return LoadedBatch([s.position for s in good], x, failures, [s.size for s in good])


def quiet_worker_shutdown(_worker_id: int) -> None:
    """DataLoader worker set-up: when the main process stops (Ctrl-C) while a worker hands it a
    tensor's file descriptor, the worker's resource-sharing thread sees its connection reset and
    would print a traceback; that one, and only that one, is silenced."""
    import threading

    default = threading.excepthook

    def hook(args: Any) -> None:
        frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback else []
        if isinstance(args.exc_value, ConnectionError) and any("resource_sharer" in f.filename for f in frames):
            return
        default(args)

    threading.excepthook = hook


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the thread that started it dies (Linux's
    PR_SET_PDEATHSIG), also on SIGKILL; exit at once if `parent` is already gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        except (OSError, AttributeError):  # no libc.prctl: the DataLoader's own parent check remains
            pass
    if os.getppid() != parent:
        os._exit(1)


def init_worker(parent: int, worker_id: int) -> None:
    """DataLoader worker set-up: dies with its parent (`die_with_parent`), quiet on shutdown."""
    die_with_parent(parent)
    quiet_worker_shutdown(worker_id)


@dataclass
class WorkerFailure:
    """Handed over instead of a batch that a decode worker could not pass to the main process."""

    reason: str


def _tensors(batch: Any) -> list[torch.Tensor]:
    """The tensors of a collated batch (a LoadedBatch, a list of items with `x`, a tensor)."""
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, (list, tuple)):
        return [t for item in batch for t in _tensors(item)]
    x = getattr(batch, "x", None)
    return [x] if isinstance(x, torch.Tensor) else []


def _remove_failed_shared_memory() -> None:
    """Remove this process's empty torch shared-memory files, left by a resize that failed (the
    live ones are unlinked as soon as they are mapped, or hold data)."""
    try:
        entries = list(os.scandir(SHM_FOLDER))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(f"torch_{os.getpid()}_"):
            try:
                if entry.stat(follow_symlinks=False).st_size == 0:
                    os.unlink(entry.path)
            except OSError:
                pass


class SharedCollate:
    """A worker's collate that moves the batch's tensors to shared memory itself, so that no room
    for them (a full /dev/shm, a file-size limit) is a `WorkerFailure` handed over, not an error
    in the queue's feeder thread (a traceback, and a main process waiting forever)."""

    def __init__(self, collate: Callable[[Sequence[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, items: Sequence[Any]) -> Any:
        batch = self.collate(items)
        try:
            for tensor in _tensors(batch):
                tensor.share_memory_()
        except RuntimeError as exc:
            _remove_failed_shared_memory()
            found = re.search(r": ([^:]+?) \(\d+\)\s*$", first_line(exc))   # torch: "...: File too large (27)"
            return WorkerFailure(f"{SHM_FOLDER}: a decode worker cannot hand its images to the main process in "
                                 f"shared memory: {found.group(1) if found else first_line(exc)}; free space there "
                                 f"or raise the file-size limit (ulimit -f), or decode in the main process "
                                 f"(workers 0)")
        return batch


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int, pin_memory: bool = False,
                collate: Callable[[Sequence[Any]], Any] = collate_samples) -> torch.utils.data.DataLoader:
    """An in-order DataLoader over `dataset` (workers > 0 decode in parallel processes, which
    die with this process and hand over a `WorkerFailure` when shared memory runs out)."""
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"prefetch_factor": 2, "worker_init_fn": functools.partial(init_worker, os.getpid())}
        collate = SharedCollate(collate)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                       collate_fn=collate, pin_memory=pin_memory, **extra)
