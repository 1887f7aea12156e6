"""One process's share of a folder run: skip what exists, stream the rest through the engine
into the figure writer, one summary record per image."""
from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...pair import ModelPair, PairResult, figure_batch_size
from ...models.inputs import TinyInputWarning
from ...figures.png import png_text
from ...core.roles import ROLES
from ...figures.png import png_intact
from ...core.files import file_kind
from ...core.errors import Param
from .figures import RenderStyle, make_render_pool, predictions, render_and_write, slice_result
from .handoff import SharedRenderPool
from .options import BatchOptions, RECORD_KEY, TAG_KEY
from .plan import Job
from .targets import TargetedBatch, split_targets, target_tensor, with_targets
from ...engine.decode import ImageFileDataset, LoadedBatch, make_loader
from ...engine.stream import run_stream
from ...engine.device import AdaptiveForward
from ...engine.workers import default_render_threads, default_workers, forward_threads, usable_cores
from ...models.cost import multiply_adds

log = logging.getLogger(__name__)


class BatchEvents:
    """What a run reports as it goes; the CLI shows it, the library itself stays silent."""

    def start(self, total: int, todo: int) -> None:
        """`total` images in this process's shard, `todo` of them to render."""

    def done(self, record: dict[str, Any]) -> None:
        """One image finished: written or failed (its summary record)."""

    def failed(self, path: Path, reason: str) -> None:
        """One image failed: reported at once."""

    def finish(self) -> None:
        """The run is over (also after an error or Ctrl-C)."""


# ----------------------------------------------------------------------------- one shard


@dataclass
class ShardRun:
    """The state of one process's work: jobs, records, the pool of pending writes."""

    pair: ModelPair
    jobs: list[Job]
    options: BatchOptions
    events: BatchEvents
    tag: str = ""
    meta: tuple[tuple[str, str], ...] = ()
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: deque = field(default_factory=deque)
    tiny: TinyInputWarning = field(init=False)

    def __post_init__(self) -> None:
        self.tiny = TinyInputWarning(self.pair.preprocess)

    def fail(self, job: Job, reason: str) -> None:
        self.records[job.index] = failed_record(job, reason)
        self.events.failed(job.source, reason)
        self.events.done(self.records[job.index])

    def collect_finished(self) -> None:
        """Record the writes that are already done, oldest first, without blocking."""
        while self.pending and self.pending[0][0].done():
            self.wait_oldest()

    def wait_oldest(self) -> None:
        """Block on the oldest pending write and record its outcome."""
        future, job, record = self.pending.popleft()
        error = future.result()
        if error is not None:
            self.fail(job, error)
            return
        self.records[job.index] = record
        self.events.done(record)


def failed_record(job: Job, reason: str) -> dict[str, Any]:
    return {"input": job.rel_input, "output": None, "status": "failed", "error": reason}


def written_record(job: Job, predicted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A figure written now; `predicted`: each role's prediction (ROLES order)."""
    return {"input": job.rel_input, "output": job.rel_output, "status": "written",
            **{role: predicted[role] for role in ROLES}}


def skipped_record(job: Job, text: dict[str, str]) -> dict[str, Any]:
    """A figure kept from an earlier run; its predictions are those it carries."""
    record: dict[str, Any] = {"input": job.rel_input, "output": job.rel_output, "status": "skipped"}
    try:
        predicted = json.loads(text[RECORD_KEY])
        record.update({role: predicted[role] for role in ROLES})
    except (KeyError, ValueError, TypeError):
        pass
    return record


def kept_figure(output: Path, tag: str) -> dict[str, str] | None:
    """The text of `output` when it is a whole figure that these settings drew, else None.

    Only PNG figures carry the tag (a tEXt chunk): a PDF or SVG figure is never kept."""
    if output.suffix.lower() != ".png" or file_kind(output) is not None:  # a FIFO there would block the read
        return None
    text = png_text(output)
    return text if text.get(TAG_KEY) == tag and png_intact(output) else None


def run_shard(pair: ModelPair, jobs: Sequence[Job], options: BatchOptions, events: BatchEvents,
              tag: str = "", meta: dict[str, str] | None = None,
              targets: Mapping[int, int] | None = None,
              records: dict[int, dict[str, Any]] | None = None) -> dict[int, dict[str, Any]]:
    """Process this rank's jobs; return their summary records by global index. `targets`: the
    class to explain of some jobs, by job index (the others: `options.target`). `records`: the
    dict the records go into as the images finish (so that a caller keeps them when the run
    stops on an error); a new one when None.

    With `skip_existing`, a figure is kept only when it is whole and its tag is `tag`: one
    drawn with other settings (another layout, models, colormap, ...), or by an interrupted
    run of other settings, is drawn again.
    """
    if options.skip_existing and options.fmt != "png":
        log.warning("%s keeps PNG figures only: every %s figure is drawn again", Param("skip_existing"),
                    options.fmt.upper())
    kept = {j.index: text for j in jobs if options.skip_existing and (text := kept_figure(j.output, tag))}
    todo = [j for j in jobs if j.index not in kept]
    state = ShardRun(pair, todo, options, events, tag, tuple(sorted((meta or {}).items())),
                     {} if records is None else records)
    for job in jobs:
        if job.index in kept:
            state.records[job.index] = skipped_record(job, kept[job.index])
    events.start(len(jobs), len(todo))
    if todo:
        _stream(state, targets)
    return state.records


def _stream(state: ShardRun, targets: Mapping[int, int] | None = None) -> None:
    """Decode, forward, render: the engine's loop with the figure writer as its consumer."""
    opts, pair = state.options, state.pair
    workers = default_workers() if opts.workers is None else opts.workers
    threads = default_render_threads() if opts.render_threads is None else opts.render_threads
    target = pair.parse_target(opts.target)
    per_image = None if targets is None else target_tensor(state.jobs, targets, target)
    dataset = ImageFileDataset([j.source for j in state.jobs], pair.preprocess)
    batch_size = opts.batch_size or figure_batch_size(pair.device, pair.preprocess.input_size)

    def run(batch: torch.Tensor | TargetedBatch) -> PairResult:
        x, chosen = split_targets(batch, target)
        return pair.run(x, chosen, opts.style.method, opts.style.scale, opts.neuron_k, opts.rank_by,
                        opts.precision)

    style = RenderStyle(opts.layout, pair.baseline.meta.class_name, opts.style, opts.top_k, opts.rank_by,
                        opts.compress_level, state.tag, fmt=opts.fmt, meta=state.meta)
    max_pending = batch_size + 2 * threads
    pool = make_render_pool(opts.render_pool_for(len(state.jobs), usable_cores()), threads, batch_size, max_pending,
                            fallback=opts.render_pool == "auto")
    writer = FigureWriter(state, AdaptiveForward(run, batch_size), pool, style, max_pending, per_image)
    split = cpu_forward_threads(pair, opts)
    try:
        if split is not None:  # `writer.close` gives the process its count back
            torch.set_num_threads(split)
        try:
            loader = make_loader(dataset, batch_size, workers, pin_memory=pair.device.type == "cuda")
        except BaseException:
            writer.close()
            raise
        run_stream(loader, writer)
    finally:
        state.events.finish()


def cpu_forward_threads(pair: ModelPair, options: BatchOptions) -> int | None:
    """On a CPU with more than one torch thread, the threads the forward passes get beside the
    render threads (`engine.workers.forward_threads`: the multiply-adds of both models against
    the pixels of the figure's panels); None elsewhere, or when the models cannot be measured."""
    cores = torch.get_num_threads()
    if pair.device.type != "cpu" or cores <= 1:
        return None
    size = pair.preprocess.input_size
    try:
        work = sum(multiply_adds(loaded.model, size) for loaded in pair.roles.values())
    except Exception:  # noqa: BLE001 - the split is an optimisation; the run reports a bad model itself
        log.debug("could not count the models' multiply-adds", exc_info=True)
        return None
    rows, columns, panel = options.figure_shape(size)
    threads = forward_threads(cores, work, rows * columns * panel * panel)
    log.debug("forward passes on %d of %d threads (%.3g G multiply-adds per image)", threads, cores, work / 1e9)
    return threads


@dataclass
class FigureWriter:
    """The consumer of a folder run: forward each batch, render and write its figures in a pool."""

    state: ShardRun
    forward: AdaptiveForward
    pool: Executor | SharedRenderPool
    style: RenderStyle
    max_pending: int
    targets: torch.Tensor | None = None  # per job position of this shard (targets.target_tensor)
    torch_threads: int = field(default_factory=torch.get_num_threads)  # restored by `close`

    def consume(self, batch: LoadedBatch) -> None:
        state, style = self.state, self.style
        for position, reason in batch.failures:
            state.fail(state.jobs[position], reason)
        if batch.x is None:
            return
        for position, size in zip(batch.positions, batch.sizes):
            state.tiny.check(state.jobs[position].source, size)
        for offset, result in self.forward(with_targets(batch.x, self.targets, batch.positions)):
            predicted = {role: predictions(part.out, style.class_name) for role, part in result.roles.items()}
            jobs = [state.jobs[batch.positions[offset + i]] for i in range(len(result.pictures))]
            records = [written_record(job, {role: values[i] for role, values in predicted.items()})
                       for i, job in enumerate(jobs)]
            if isinstance(self.pool, SharedRenderPool):  # the batch goes to the processes at once
                futures = self.pool.submit_batch(result, render_and_write,
                                                 [(job.rel_input, job.output, style) for job in jobs], state.wait_oldest)
                state.pending.extend(zip(futures, jobs, records))
                self._bound_pending()
                continue
            for i, (job, record) in enumerate(zip(jobs, records)):
                future: Future = self.pool.submit(render_and_write, slice_result(result, i), job.rel_input,
                                                  job.output, style)
                state.pending.append((future, job, record))
                self._bound_pending()
        state.collect_finished()

    def _bound_pending(self) -> None:
        """Wait for the oldest writes while more than `max_pending` are in flight."""
        while len(self.state.pending) > self.max_pending:
            self.state.wait_oldest()

    def drain(self) -> None:
        while self.state.pending:
            self.state.wait_oldest()

    def close(self) -> None:
        """Cancel the writes not started; those in flight finish (atomically) and are recorded.
        The process's torch thread count is as before the render threads and the forward
        passes set theirs."""
        for future, _job, _record in self.state.pending:
            future.cancel()
        try:
            self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            torch.set_num_threads(self.torch_threads)
        while self.state.pending:  # the writes that were in flight have finished: record them
            if self.state.pending[0][0].cancelled():
                self.state.pending.popleft()
            else:
                self.state.wait_oldest()
