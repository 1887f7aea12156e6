"""`sanity_dataset`: the model parameter randomisation test of both models on a list of images,
on the engine's stream, alone or as a torchrun rank.

Per decoded batch and model: the original map (the working copy with nothing randomised), the
class to explain fixed there (the label, else the original model's prediction), then one
forward pass (and backward for gradient methods) per step with that step's layers randomised,
each map upsampled to the input resolution and compared with the original one
(`metrics.similarity`). The batch goes through `AdaptiveForward`: an out-of-memory error
halves it and the chunk is redone from its original maps. Under torchrun every rank takes
`samples[rank::world]` and rank 0 merges the ranks' per-image numbers in image order.
"""
from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...cams.compute import compute_cams, upsample_maps
from ...cams.methods import get_method
from ...core.errors import ParameterError
from ...core.io import atomic_write_bytes
from ...core.names import display_name
from ...core.roles import ROLES
from ...datasets import Sample
from ...engine.decode import ImageFileDataset, LoadedBatch, make_loader
from ...engine.device import AdaptiveForward
from ...engine.distributed import Shard, gather_parts, process_group
from ...engine.stream import run_stream
from ...engine.workers import default_workers, usable_cores
from ...metrics.similarity import SIMILARITIES, map_similarities
from ...pair import ModelPair, autocast_dtype, default_batch_size
from .schedule import GRANULARITIES, MODES, Randomiser, Step, build_schedule, model_units, step_layers

log = logging.getLogger(__name__)

__all__ = ["SanityOptions", "SanityResult", "map_folder", "sanity_dataset"]


@dataclass(frozen=True)
class SanityOptions:
    """How `sanity_dataset` runs (the CLI's flags)."""

    method: str = "cam"
    mode: str = "cascading"          # cascading or independent
    granularity: str = "block"       # block or layer
    seed: int = 0                    # the random weights and the bootstrap
    bootstrap: int = 1000            # resamples of the paired bootstrap; 0: no intervals
    batch_size: int | None = None    # None: default_batch_size(the models' device)
    workers: int | None = None       # decode workers; None: default_workers()
    limit: int | None = None
    precision: str = "fp32"
    figure_images: int = 4           # images shown in the report's maps figure

    def check(self) -> None:
        """Option checks that need no model (ParameterError naming the parameter)."""
        get_method(self.method)
        if self.mode not in MODES:
            raise ParameterError("mode", f"{{param}} {self.mode!r}: choose from {', '.join(MODES)}")
        if self.granularity not in GRANULARITIES:
            raise ParameterError("granularity", f"{{param}} {self.granularity!r}: choose from "
                                                f"{', '.join(GRANULARITIES)}")
        for name in ("bootstrap", "figure_images"):
            if getattr(self, name) < 0:
                raise ParameterError(name, f"{{param}} {getattr(self, name)}: must be 0 or more")
        for name in ("batch_size", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ParameterError(name, f"{{param}} {getattr(self, name)}: must be at least 1")
        autocast_dtype(self.precision)


@dataclass
class SanityResult:
    """The similarities of every scored image after every step, both models.

    `similarity[role][measure]`: (images, steps) float64, NaN where undefined (a flat map) or
    where the step randomises nothing of that model in independent mode. `figure_maps[role]`:
    (images shown, steps + 1, S, S) float32, the original map first."""

    steps: list[Step]
    image_ids: list[str]
    targets: dict[str, np.ndarray]
    similarity: dict[str, dict[str, np.ndarray]]
    figure_maps: dict[str, np.ndarray]
    figure_pictures: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    input_size: int = 0

    @property
    def images(self) -> int:
        return len(self.image_ids)


def map_folder(save_maps: Path, role: str, index: int, steps: Sequence[Step]) -> Path:
    """Where the maps of `role` after step `index` go (0: the original): `<role>/<NN>_<step>/`."""
    name = "original" if index == 0 else steps[index - 1].name
    return save_maps / role / f"{index:02d}_{name}"


@dataclass
class _Chunk:
    """A batch's images and classes, sliced together by AdaptiveForward."""

    x: torch.Tensor
    positions: list[int]
    labels: torch.Tensor   # (n,) -1: no label

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, part: slice) -> "_Chunk":
        return _Chunk(self.x[part], self.positions[part], self.labels[part])


@dataclass
class _ChunkResult:
    positions: list[int]
    targets: dict[str, np.ndarray]
    similarity: dict[str, dict[str, np.ndarray]]          # role -> measure -> (n, steps)
    shown: dict[str, dict[int, np.ndarray]]               # role -> position -> (steps + 1, S, S)
    pictures: dict[int, np.ndarray]


class _SanityPass:
    """One chunk through every step of both models (what AdaptiveForward runs)."""

    def __init__(self, pair: ModelPair, steps: list[Step], options: SanityOptions, samples: Sequence[Sample],
                 save_maps: Path | None, pool: ThreadPoolExecutor) -> None:
        self.pair, self.steps, self.options, self.samples = pair, steps, options, samples
        self.randomisers = {role: Randomiser(pair.roles[role].model, options.seed) for role in ROLES}
        self.size = pair.preprocess.input_size
        self.dtype = autocast_dtype(options.precision)
        self.save_maps = save_maps
        self.pool = pool

    def _maps(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> tuple[np.ndarray, Any]:
        out = compute_cams(model, x, target, self.options.method, autocast=self.dtype)
        cam = out.cam.detach().float()
        if tuple(cam.shape[-2:]) != (self.size, self.size):
            cam = upsample_maps(cam, self.size)
        return cam.cpu().numpy(), out.target.detach().cpu()

    def _original(self, model: torch.nn.Module, x: torch.Tensor,
                  labels: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """The original maps and the class each image's maps explain: its label, else the prediction."""
        if bool((labels >= 0).all()):
            return self._maps(model, x, labels.to(x.device))
        original, targets = self._maps(model, x, None)
        if bool((labels >= 0).any()):
            targets = torch.where(labels >= 0, labels, targets)
            original, _ = self._maps(model, x, targets.to(x.device))
        return original, targets

    def __call__(self, chunk: _Chunk) -> _ChunkResult:
        x = chunk.x.to(self.pair.device, non_blocking=True)
        n, k = len(chunk), len(self.steps)
        shown_at = [i for i, p in enumerate(chunk.positions) if p < self.options.figure_images]
        result = _ChunkResult(chunk.positions, {}, {}, {}, {})
        if shown_at:
            pictures = self.pair.preprocess.to_uint8(x[shown_at])
            result.pictures = {chunk.positions[i]: pictures[j] for j, i in enumerate(shown_at)}
        for role in ROLES:
            randomiser = self.randomisers[role]
            original, targets = self._original(randomiser.apply(frozenset()), x, chunk.labels)
            result.targets[role] = targets.numpy()
            self._save(role, 0, chunk.positions, original)
            shown = [[original[i]] for i in shown_at]
            jobs: list[Future | dict[str, np.ndarray] | None] = []
            current = original
            for index in range(1, k + 1):
                if self.steps[index - 1].layers[role]:
                    model = randomiser.apply(step_layers(self.steps, index, role, self.options.mode))
                    current, _ = self._maps(model, x, targets.to(x.device))
                    jobs.append(self.pool.submit(map_similarities, original, current))
                elif self.options.mode == "independent":   # nothing of this model changes at this step
                    current = original
                    jobs.append(None)
                else:                                         # cascading: the previous step's model
                    jobs.append(jobs[-1] if jobs else self.pool.submit(map_similarities, original, current))
                self._save(role, index, chunk.positions, current)
                for row, i in zip(shown, shown_at):
                    row.append(current[i])
            randomiser.apply(frozenset())
            nan = np.full(n, math.nan)
            done = [job.result() if isinstance(job, Future) else job for job in jobs]
            result.similarity[role] = {m: np.stack([nan if d is None else d[m] for d in done], axis=1)
                                       for m in SIMILARITIES}
            result.shown[role] = {chunk.positions[i]: np.stack(row).astype(np.float32) for row, i in zip(shown, shown_at)}
        return result

    def _save(self, role: str, index: int, positions: Sequence[int], maps: np.ndarray) -> None:
        if self.save_maps is None:
            return
        folder = map_folder(self.save_maps, role, index, self.steps)
        for position, cam in zip(positions, maps):
            path = folder / f"{self.samples[position].image_id}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            np.save(buffer, cam.astype(np.float32))
            atomic_write_bytes(path, buffer.getvalue())


class _Consumer:
    """The stream's consumer: each decoded batch through AdaptiveForward(_SanityPass)."""

    def __init__(self, forward: AdaptiveForward, samples: Sequence[Sample],
                 on_batch: Callable[[int], None] | None) -> None:
        self.forward = forward
        self.samples = samples
        self.on_batch = on_batch
        self.results: list[_ChunkResult] = []
        self.failed: list[tuple[int, str]] = []

    def consume(self, batch: LoadedBatch) -> None:
        self.failed.extend(batch.failures)
        if batch.x is not None:
            labels = torch.tensor([self.samples[p].label for p in batch.positions], dtype=torch.long)
            for _, part in self.forward(_Chunk(batch.x, list(batch.positions), labels)):
                self.results.append(part)
        if self.on_batch:
            self.on_batch(len(batch.positions) + len(batch.failures))

    def drain(self) -> None:
        """Nothing is left in flight after `consume`."""

    def close(self) -> None:
        """Nothing to cancel."""


def pair_schedule(pair: ModelPair, granularity: str) -> list[Step]:
    """The pair's one schedule (`schedule.build_schedule`)."""
    size = pair.preprocess.input_size
    return build_schedule({role: model_units(pair.roles[role].model, size, granularity) for role in ROLES})


def sanity_dataset(pair: ModelPair, samples: Sequence[Sample], options: SanityOptions = SanityOptions(),
                   save_maps: Path | None = None,
                   on_batch: Callable[[int], None] | None = None) -> SanityResult | None:
    """Both models through the randomisation schedule on `samples` (their label, or -1: none).

    Under torchrun (RANK, WORLD_SIZE) each rank takes its shard; rank 0 returns the merged
    result (equal to a one-process run's), the other ranks None.
    """
    options.check()
    samples = list(samples)[:options.limit]
    steps = pair_schedule(pair, options.granularity)
    shard = Shard.from_env()
    with process_group(shard):
        part: list[Any] | None = None
        failure: Exception | None = None
        try:
            part = _run_rank(pair, steps, samples, shard, options, save_maps, on_batch)
        except Exception as exc:  # noqa: BLE001 - handed to gather_parts, which raises it on every rank
            failure = exc
        parts = gather_parts(part, shard, failure)
    if shard.rank != 0:
        return None
    return _merge(parts, steps, samples, pair.preprocess.input_size, options)


def _run_rank(pair: ModelPair, steps: list[Step], samples: Sequence[Sample], shard: Shard, options: SanityOptions,
              save_maps: Path | None, on_batch: Callable[[int], None] | None) -> list[Any]:
    positions = shard.take(range(len(samples)))
    batch_size = options.batch_size or default_batch_size(pair.device)
    workers = default_workers() if options.workers is None else options.workers
    dataset = _ShardImages(samples, positions, pair.preprocess)
    loader = make_loader(dataset, batch_size, workers, pin_memory=pair.device.type == "cuda")
    threads = 1 if pair.device.type == "cpu" else max(1, usable_cores() - workers)
    with ThreadPoolExecutor(threads, thread_name_prefix="ncviz-similarity") as pool:
        run = _SanityPass(pair, steps, options, samples, save_maps, pool)
        consumer = _Consumer(AdaptiveForward(run, batch_size), samples, on_batch)
        run_stream(loader, consumer)
    return [consumer.results, consumer.failed]


class _ShardImages(ImageFileDataset):
    """The images of this rank's `positions`, each item carrying its position in the whole list."""

    def __init__(self, samples: Sequence[Sample], positions: Sequence[int], preprocess: Any) -> None:
        super().__init__([samples[p].path for p in positions], preprocess)
        self.positions = list(positions)

    def __getitem__(self, index: int) -> Any:
        item = super().__getitem__(index)
        item.position = self.positions[index]
        return item


def _merge(parts: Sequence[list[Any]], steps: list[Step], samples: Sequence[Sample], size: int,
           options: SanityOptions) -> SanityResult:
    """Rank 0: the ranks' chunks as one result, images in their order."""
    chunks = sorted((c for results, _ in parts for c in results), key=lambda c: c.positions[0])
    failed_at = dict(pair for _, failed in parts for pair in failed)
    for position in sorted(failed_at):
        log.warning("%s: %s (skipped)", display_name(str(samples[position].path)), failed_at[position])
    order = [p for c in chunks for p in c.positions]
    rank = np.argsort(order, kind="stable")
    targets = {role: np.concatenate([c.targets[role] for c in chunks])[rank] if chunks else np.zeros(0, np.int64)
               for role in ROLES}
    similarity = {role: {m: (np.concatenate([c.similarity[role][m] for c in chunks])[rank] if chunks
                             else np.zeros((0, len(steps)))) for m in SIMILARITIES} for role in ROLES}
    shown = sorted({p for c in chunks for p in c.pictures})
    figure_maps = {role: np.stack([next(c.shown[role][p] for c in chunks if p in c.shown[role]) for p in shown])
                   if shown else np.zeros((0, len(steps) + 1, size, size), np.float32) for role in ROLES}
    pictures = np.stack([next(c.pictures[p] for c in chunks if p in c.pictures) for p in shown]) if shown \
        else np.zeros((0, size, size, 3), np.uint8)
    return SanityResult(steps, [samples[p].image_id for p in sorted(order)], targets, similarity, figure_maps,
                        pictures, [(str(samples[p].path), failed_at[p]) for p in sorted(failed_at)], size)
