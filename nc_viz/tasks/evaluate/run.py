"""`evaluate_dataset`: the engine's stream with a metric consumer, alone or as a torchrun rank.

Every rank decodes and scores its shard (`samples[rank::world]`): its records stream to a part
file, its per-image threshold outcomes and mask histograms to raw files (`outcomes`), its counts
and histograms stay in accumulators. The ranks then exchange small picklable parts (accumulator
states, failures, the paths of their files); rank 0 merges the records in image order, reads the
outcomes and mask histograms back for the bootstrap and returns the Evaluation, the other ranks
return None. Their files live in a scratch folder of each rank, so the ranks must share a file
system (one machine, or a shared TMPDIR).
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ...pair import ModelPair, default_batch_size
from ...datasets import Dataset, Sample, check_classes
from ...engine.decode import make_loader
from ...engine.device import AdaptiveForward
from ...engine.distributed import Shard, barrier, gather_parts, process_group
from ...engine.stream import run_stream
from ...engine.workers import default_score_threads, default_workers
from ...core.errors import ParameterError, UsageError
from ...core.names import display_name
from ...metrics.wsol import BoxAccumulator, MaskAccumulator
from .records import RecordWriter
from .decode import EvalImages, EvalItem, collate_items
from .merge import merge_records
from .options import ROLES, EvalOptions, record_metrics
from .outcomes import HistogramWriter, OutcomeWriter, read_outcomes
from .scratch import scratch_folder
from .score import EvalInputs, ForwardBoth, ModelTally, score_batch
from .summary import Evaluation, summarise

log = logging.getLogger(__name__)


@dataclass
class RankPart:
    """What one rank hands to rank 0: small and picklable; the bulk stays in its files."""

    states: dict[str, dict[str, Any]]           # role -> accumulator states
    failed: list[tuple[int, str]]                # (position, reason)
    records: str                                 # this rank's records file
    outcomes: dict[str, str]                     # role -> this rank's outcome file
    histograms: dict[str, str]                   # role -> this rank's mask histograms (none: no bootstrap)


@dataclass
class MetricConsumer:
    """The consumer of an evaluation: forward each batch, score its images, stream the rows.

    With a `pool` (one thread), a chunk's scoring (the compiled box kernels, OpenCV and numpy,
    which release Python's lock) overlaps the next forward pass; chunks are scored and written
    in order, and at most `max_pending` wait, so memory stays bounded. With an `image_pool` too,
    the images of a chunk are measured in its threads (and tallied in order).
    """

    forward: AdaptiveForward
    samples: Sequence[Sample]
    size: int
    options: EvalOptions
    tallies: dict[str, ModelTally]
    writer: RecordWriter
    save_maps: Path | None = None
    on_batch: Callable[[int], None] | None = None
    pool: Executor | None = None
    image_pool: Executor | None = None
    max_pending: int = 2
    failed: list[tuple[int, str]] = field(default_factory=list)
    pending: deque[Future] = field(default_factory=deque)

    def consume(self, items: list[EvalItem]) -> None:
        good = [it for it in items if it.error is None]
        self.failed.extend((it.position, it.error or "") for it in items if it.error is not None)
        if good:
            inputs = EvalInputs(torch.stack([it.x for it in good]),
                                torch.tensor([self.samples[it.position].label for it in good]))
            for offset, outputs in self.forward(inputs):
                self._score(good[offset:offset + len(outputs["baseline"]["logits"])], outputs)
        if self.on_batch:
            self.on_batch(len(items))

    def _score(self, chunk: list[EvalItem], outputs: dict[str, dict[str, torch.Tensor]]) -> None:
        if self.pool is None:
            self._score_now(chunk, outputs)
            return
        self.pending.append(self.pool.submit(self._score_now, chunk, outputs))
        while len(self.pending) > self.max_pending:
            self.pending.popleft().result()

    def _score_now(self, chunk: list[EvalItem], outputs: dict[str, dict[str, torch.Tensor]]) -> None:
        self.writer.write(score_batch(chunk, outputs, self.samples, self.size, self.options, self.tallies,
                                      self.save_maps, self.image_pool))

    def drain(self) -> None:
        """Wait for the chunks still being scored (their errors are raised here)."""
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        """Cancel the chunks not started; the one being scored finishes."""
        for future in self.pending:
            future.cancel()
        for pool in (self.pool, self.image_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def evaluate_dataset(pair: ModelPair, dataset: Dataset, options: EvalOptions = EvalOptions(),
                     records_path: Path | None = None, save_maps: Path | None = None,
                     on_batch: Callable[[int], None] | None = None) -> Evaluation | None:
    """Score both models on `dataset` (already read); per-image rows go to `records_path`.

    Under torchrun (RANK, WORLD_SIZE) each rank scores its shard; rank 0 returns the merged
    Evaluation (equal to a one-process run's), the other ranks None.
    """
    options.check()
    meta = pair.baseline.meta
    check_classes(dataset, meta.num_classes, meta.class_names)
    _require_exact_cams(pair)
    samples = dataset.samples[:options.limit]
    shard = Shard.from_env()
    with process_group(shard), ExitStack() as stack:
        scratch = stack.enter_context(scratch_folder())
        part: RankPart | None = None
        failure: Exception | None = None
        try:
            part = _run_rank(pair, samples, shard, options, scratch, records_path, save_maps, on_batch)
        except Exception as exc:  # noqa: BLE001 - handed to gather_parts, which raises it on every rank
            failure = exc
        parts = gather_parts(part, shard, failure)
        evaluation = None
        if shard.rank == 0:
            evaluation = _merge(parts, samples, options, records_path or scratch / "records.csv")
        barrier(shard)  # rank 0 has read every rank's files before any scratch folder goes
    return evaluation


def _require_exact_cams(pair: ModelPair) -> None:
    """evaluate scores CAM and its neuron maps: a model for which CAM is not exact is refused
    before any image is read (checked on one small input, cached from loading)."""
    from ...models import check_cam_contract

    for role, loaded in pair.roles.items():
        contract = check_cam_contract(loaded.model, min(loaded.meta.input_size, 64))
        if not contract.exact:
            raise ParameterError("method", f"evaluate scores CAM maps, and CAM is not exact for the {role} model "
                                           f"({loaded.meta.arch}): {contract.reason}; `ncviz compare/neurons/batch "
                                           f"{{param}} gradcam` can still draw it")


def _run_rank(pair: ModelPair, samples: Sequence[Sample], shard: Shard, options: EvalOptions, scratch: Path,
              records_path: Path | None, save_maps: Path | None,
              on_batch: Callable[[int], None] | None) -> RankPart:
    """This rank's shard through the engine: decode workers -> forward (autocast, OOM halving) -> score."""
    preprocess = replace(pair.preprocess, center_crop=False)   # the protocol: S x S, no crop
    positions = shard.take(range(len(samples)))
    records = records_path if (shard.world == 1 and records_path is not None) else scratch / "records.part.csv"
    outcome_paths = {role: scratch / f"{role}.outcomes" for role in ROLES}
    histogram_paths = {role: scratch / f"{role}.histograms" for role in ROLES} if options.bootstrap else {}
    batch_size = options.batch_size or default_batch_size(pair.device)
    workers = default_workers() if options.workers is None else options.workers
    loader = make_loader(EvalImages(samples, positions, preprocess), batch_size, workers,
                         pin_memory=pair.device.type == "cuda", collate=collate_items)
    with RecordWriter(records, record_metrics(options)) as writer, ExitStack() as files:
        tallies = {role: ModelTally(outcomes=files.enter_context(OutcomeWriter(outcome_paths[role])),
                                    histograms=(files.enter_context(HistogramWriter(histogram_paths[role]))
                                                if role in histogram_paths else None))
                   for role in ROLES}
        threads = (default_score_threads(pair.device.type, workers) if options.score_threads is None
                   else options.score_threads)
        pool = ThreadPoolExecutor(1, thread_name_prefix="ncviz-score") if threads else None
        image_pool = ThreadPoolExecutor(threads, thread_name_prefix="ncviz-measure") if threads > 1 else None
        consumer = MetricConsumer(AdaptiveForward(ForwardBoth(pair, options), batch_size), samples,
                                  preprocess.input_size, options, tallies, writer, save_maps, on_batch, pool,
                                  image_pool)
        run_stream(loader, consumer)
    return RankPart({role: t.state() for role, t in tallies.items()}, consumer.failed, str(records),
                    {role: str(p) for role, p in outcome_paths.items()},
                    {role: str(p) for role, p in histogram_paths.items()})


def _merge(parts: Sequence[RankPart], samples: Sequence[Sample], options: EvalOptions,
           records_path: Path) -> Evaluation:
    """Rank 0: the ranks' parts as one run's Evaluation (records merged in image order)."""
    failed_at = dict(pos_reason for part in parts for pos_reason in part.failed)
    if len(parts) > 1:
        merge_records([Path(p.records) for p in parts], records_path, len(samples), failed_at, len(ROLES))
    else:
        records_path = Path(parts[0].records)
    boxes = {role: BoxAccumulator() for role in ROLES}
    masks = {role: MaskAccumulator() for role in ROLES}
    for part in parts:
        for role in ROLES:
            boxes[role].merge(BoxAccumulator.from_state(part.states[role]["boxes"]))
            masks[role].merge(MaskAccumulator.from_state(part.states[role]["masks"]))
    curves = {role: mean_curves([part.states[role] for part in parts]) for role in ROLES}
    outcomes = {role: read_outcomes([p.outcomes[role] for p in parts]) for role in ROLES}
    boxed_ids = [samples[int(i)].image_id for i in outcomes["baseline"]["position"]]
    failed = [(str(samples[pos].path), failed_at[pos]) for pos in sorted(failed_at)]
    for path, reason in failed:
        log.warning("%s: %s (skipped)", display_name(path), reason)
    histograms = {role: [p.histograms[role] for p in parts if role in p.histograms] for role in ROLES}
    non_finite = {role: sum(int(part.states[role].get("non_finite", 0)) for part in parts) for role in ROLES}
    evaluation = summarise(records_path, boxes, masks, outcomes, boxed_ids, options, len(samples) - len(failed),
                           failed, histograms, non_finite)
    evaluation.faithfulness_curves = curves if any(curves.values()) else {}
    return evaluation


def mean_curves(states: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """The ranks' deletion/insertion curve sums as mean curves over all images (exact merge)."""
    images = sum(state.get("curve_images", 0) for state in states)
    if not images:
        return {}
    names = {name for state in states for name in state.get("curves", {})}
    return {name: (sum(state["curves"][name] for state in states if name in state.get("curves", {}))
                   / images).tolist() for name in sorted(names)}
