"""`run_batch`: one figure per image of a folder, alone or as a torchrun rank."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...pair import ModelPair, PairSpec, load_model_pair
from ...core.errors import ParameterFailure
from ...core.io import check_writable
from ..provenance import build_provenance, figure_meta
from ...core.finite import flag_summary
from ...core.limits import check_figure_shape
from ...core.lock import FolderLock
from ..guards import check_batch_layout, check_outputs_distinct, model_inputs
from .options import BatchOptions, INDEX_NAME, SUMMARY_NAME
from .plan import Job, discover, plan_jobs
from .shard import BatchEvents, failed_record, run_shard
from .targets import TargetRow, match_images, read_targets, resolve_classes
from .summary import BatchSummary, build_summary, drop_stale_reports, run_settings, settings_tag, write_reports
from ...engine.device import rank_device
from ...engine.distributed import Shard, gather_outcomes, process_group, rank_failure

log = logging.getLogger(__name__)


@dataclass
class RankProgress:
    """How far this process got: kept when its run stops on an error, so that rank 0 can still
    write the summary. `provenance` is set once the pair is loaded and checked, `records` fill
    as images finish, `started` once figures are being drawn (the folder locked, stale reports
    gone)."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    started: bool = False


def _run_rank(spec: PairSpec, out: Path, jobs: Sequence[Job], options: BatchOptions,
              events: BatchEvents, settings: dict[str, Any], rank: int,
              lock: FolderLock | None = None,
              matched: Mapping[int, TargetRow] | None = None,
              progress: RankProgress | None = None) -> RankProgress:
    """This process's part: load the pair, check it (the classes of `matched`, the targets
    file's rows by job index, among them), render its shard of the jobs.
    Fills and returns `progress` (the run's provenance, then the records as images finish)."""
    progress = progress or RankProgress()
    pair = load_model_pair(spec)
    if options.draws_neurons:
        from ..figures import check_top_k

        check_top_k(pair, options.top_k)
    pair.parse_target(options.target)  # a bad `target` fails here, before anything is created
    classes = resolve_classes(matched, pair.parse_target, options.targets) if matched is not None else None
    check_figure_shape(*options.figure_shape(pair.preprocess.input_size), "{param} or {param:top_k}",
                       font=options.style.font_pixels)
    progress.provenance = run_provenance(pair, options, settings)
    tag = settings_tag(settings)
    out.mkdir(parents=True, exist_ok=True)
    if lock is not None:
        lock.acquire()
    if rank == 0:
        drop_stale_reports(out, tag)
    progress.started = True
    run_shard(pair, jobs, options, events, tag, figure_meta(progress.provenance), classes, progress.records)
    return progress


def run_provenance(pair: ModelPair, options: BatchOptions, settings: dict[str, Any]) -> dict[str, Any]:
    """The provenance of this run; the checkpoints' hashes come from `settings` (hashed once)."""
    neurons = options.draws_neurons
    hashes = {role: settings["models"][role]["sha256"] for role in ("baseline", "nc")}
    style = options.style
    return build_provenance(pair, method=style.method, target=options.target, cmap=style.cmap,
                            alpha=style.alpha, scale=style.scale, top_k=options.top_k if neurons else None,
                            rank_by=options.rank_by, precision=options.precision, hashes=hashes)


def check_layout(src: Path, out: Path, jobs: Sequence[Job], spec: PairSpec) -> None:
    """Before any work: no figure lands in the input folder, no report is one of its folders,
    and no output is a checkpoint (or another file the run reads)."""
    reports = (SUMMARY_NAME, INDEX_NAME)
    check_batch_layout(src, out, [j.output for j in jobs], reports)
    check_outputs_distinct(model_inputs(spec), [*(out / name for name in reports), *(j.output for j in jobs)])


def run_batch(input_dir: str | os.PathLike, output_dir: str | os.PathLike, *, pair_spec: PairSpec = PairSpec(),
              options: BatchOptions = BatchOptions(), events: BatchEvents | None = None) -> BatchSummary:
    """One figure per image of `input_dir` into `output_dir`, plus summary.json and index.html.

    Works alone or as one rank under torchrun. Raises KeyboardInterrupt after a clean
    shutdown (no partial file is left); bad images are recorded, not raised. When a rank fails
    as a whole, rank 0 still writes summary.json and index.html, that rank's images listed as
    failed with its reason (rank 0's own figures drawn before it stopped as written); then every
    rank raises (naming the failed rank). A run that stops before drawing anything (a checkpoint
    that does not load, a folder locked by another run) leaves an earlier summary as it was.
    """
    events = events or BatchEvents()
    options.check()
    src, out = Path(input_dir), Path(output_dir)
    files = discover(src, out, options.recursive)
    if not files:
        hint = "" if options.recursive else " (use {param:recursive} for subfolders)"
        raise ParameterFailure("recursive", f"{src}: no image files{hint}")
    jobs = plan_jobs(files, src, out, options.fmt)
    check_layout(src, out, jobs, pair_spec)
    matched = match_images(read_targets(options.targets), jobs, src, options.targets) if options.targets else None
    settings = run_settings(options, pair_spec.checkpoints(), pair_spec)
    check_writable(out, folder=True)
    shard = Shard.from_env()
    spec = replace(pair_spec, device=rank_device(pair_spec.device or "auto", shard))
    started = time.perf_counter()
    with process_group(shard), FolderLock(out, shard.rank, command="batch") as lock:
        failure: Exception | None = None
        progress = RankProgress()
        try:
            _run_rank(spec, out, shard.take(jobs), options, events, settings, shard.rank, lock, matched, progress)
        except Exception as exc:  # noqa: BLE001 - raised below, once rank 0 has written the summary
            failure = exc
        outcomes = gather_outcomes((progress.records, progress.provenance), shard, failure)
        merged = merge_outcomes(outcomes, jobs, shard)
        if failure is not None:  # this rank's figures drawn before it stopped stand as written
            merged.update(progress.records)
        provenance = progress.provenance or next((part[1] for part, _ in outcomes if part is not None), None)
        summary = flag_summary(build_summary(merged, src, settings, provenance))
        if shard.rank == 0 and (failure is None or progress.started):  # still under the lock
            write_reports(out, summary)
    if failure is not None:
        raise failure
    other = rank_failure(outcomes, shard)
    if other is not None:
        raise other
    log.info("%d images in %.1f s", len(jobs), time.perf_counter() - started)
    return BatchSummary(out, summary)


def merge_outcomes(outcomes: Sequence[tuple[Any, str | None]], jobs: Sequence[Job],
                   shard: Shard) -> dict[int, dict[str, Any]]:
    """The ranks' records, merged; every image of a rank that failed as a whole (and so returned
    no record) is a failed record with that rank's reason."""
    merged: dict[int, dict[str, Any]] = {}
    for rank, (part, reason) in enumerate(outcomes):
        if part is not None:
            merged.update(part[0])
            continue
        why = f"rank {rank} of {shard.world} failed: {reason}" if shard.world > 1 else f"the run stopped: {reason}"
        for job in Shard(rank, shard.world).take(jobs):
            merged[job.index] = failed_record(job, why)
    return merged
