"""Decoding in DataLoader workers: one item per file, a failure is returned as that item's
error, never raised, so one bad file never stops a run."""
from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..data import Preprocess, load_image
from ..errors import first_line
from ..names import display_name


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


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int, pin_memory: bool = False,
                collate: Callable[[Sequence[Any]], Any] = collate_samples) -> torch.utils.data.DataLoader:
    """An in-order DataLoader over `dataset` (workers > 0 decode in parallel processes)."""
    extra: dict[str, Any] = {"prefetch_factor": 2, "worker_init_fn": quiet_worker_shutdown} if workers > 0 else {}
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                       collate_fn=collate, pin_memory=pin_memory, **extra)
