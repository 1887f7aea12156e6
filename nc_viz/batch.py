"""`ncviz batch`: one figure per image of a folder, streamed (DESIGN 5 and 6).

The pipeline, per process::

    sorted image files -> skip existing outputs -> DataLoader workers (decode + preprocess;
    a bad file becomes an error record, never an exception) -> batched forward passes of
    both models (ModelPair.run; a CUDA out-of-memory halves the batch) -> render +
    encode + atomic write in a bounded pool -> summary.json and index.html.

Under torchrun every rank takes the shard `files[rank::world]` of the sorted list; rank 0
gathers the per-image records and writes the merged summary and the gallery, so the files
equal those of a one-process run.

Output names: `<stem>.png` (`.pdf`, `.svg` with that format) in OUTDIR; with `recursive`,
under the input's subfolder. When two inputs of one folder share a stem (`a.jpg`, `a.png`),
both keep their suffix instead: `a.jpg.png`, `a.png.png` (compared case-insensitively); any
name still taken gets `-2`, `-3`... in sorted order. Nothing here prints: progress and errors
go to a `BatchEvents` object.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api import ModelPair, PairResult, autocast_dtype, checkpoint_paths, default_batch_size, load_model_pair
from .cam import CamOutput
from .data import Preprocess, TinyInputWarning, find_images, load_image
from .errors import NcVizError, UsageError, first_line
from .figures import compare_figure, neurons_figure, resolve_colorbar
from .io import atomic_write_bytes, check_writable
from .provenance import build_provenance, figure_meta, file_sha256, option_settings, provenance_html
from .render import FORMATS, Figure, check_colormap, compose_array, encode, encode_png, png_text
from .finite import flag_summary
from .limits import check_figure_shape
from .lock import FolderLock
from .pngcheck import png_intact
from .names import display_name, href, json_safe, readable
from .safety import check_batch_layout, check_outputs_distinct, model_inputs

log = logging.getLogger(__name__)

LAYOUTS = ("compare", "neurons")
SUMMARY_NAME = "summary.json"
INDEX_NAME = "index.html"
SUMMARY_SCHEMA = "ncviz.batch/2"
TAG_KEY = "ncviz-settings"  # tEXt chunk of every figure: the tag of the settings that drew it
RECORD_KEY = "ncviz-predictions"  # tEXt chunk: both models' class and probability (JSON)
RENDER_POOLS = ("thread", "process")


# ----------------------------------------------------------------------------- options


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decode workers: half the cores (1 on a 2-core machine), at most 8."""
    return max(1, min(8, usable_cores() // 2))


def default_render_threads() -> int:
    """Render + encode threads: half the cores, at most 8."""
    return max(1, min(8, usable_cores() // 2))


@dataclass(frozen=True)
class BatchOptions:
    """Everything `run_batch` does besides the models; the defaults are the CLI's."""

    layout: str = "compare"
    top_k: int = 8
    rank_by: str = "contribution"
    method: str = "cam"
    target: str | None = None
    cmap: str = "jet"
    alpha: float = 0.5
    scale: str = "panel"
    panel_size: int | None = None
    precision: str = "fp32"
    batch_size: int | None = None       # None: default_batch_size(the models' device)
    workers: int | None = None          # DataLoader workers; None: default_workers()
    render_threads: int | None = None   # None: default_render_threads()
    render_pool: str = "thread"         # "thread" or "process"
    recursive: bool = False
    skip_existing: bool = False
    compress_level: int = 1             # zlib level of the figures' PNGs (see encode_png)
    colorbar: bool | None = None        # None: on with scale "shared" only
    fmt: str = "png"                    # png, pdf or svg

    def check(self) -> None:
        """Option checks that need no model (UsageError on the first bad one)."""
        if self.layout not in LAYOUTS:
            raise UsageError(f"--layout {self.layout}: choose from {', '.join(LAYOUTS)}")
        if self.render_pool not in RENDER_POOLS:
            raise UsageError(f"render pool {self.render_pool!r}: choose from {', '.join(RENDER_POOLS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers {self.workers}: must be 0 or more")
        if self.fmt not in FORMATS:
            raise UsageError(f"--format {self.fmt}: choose from {', '.join(FORMATS)}")
        if not 0 <= self.compress_level <= 9:
            raise UsageError(f"PNG compression level {self.compress_level}: use 0..9")
        if self.render_threads is not None and self.render_threads < 1:
            raise UsageError(f"--render-threads {self.render_threads}: must be at least 1")
        autocast_dtype(self.precision)
        check_colormap(self.cmap)
        if self.layout == "neurons":
            from .workflows import check_neuron_options

            check_neuron_options(self.top_k, self.method, self.rank_by)

    @property
    def neuron_k(self) -> int:
        """Top-k neurons the forward pass must return (0 for the compare layout)."""
        return self.top_k if self.layout == "neurons" else 0


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Job:
    """One input image: its place in the sorted list and where its figure goes."""

    index: int
    source: Path
    output: Path
    rel_input: str
    rel_output: str


def discover(input_dir: Path, output_dir: Path, recursive: bool) -> list[Path]:
    """Sorted image files of `input_dir`, without anything inside `output_dir`."""
    if not input_dir.is_dir():
        raise NcVizError(f"{input_dir}: not a folder")
    out, src = output_dir.resolve(), input_dir.resolve()
    if out == src:
        raise UsageError(f"-o {output_dir}: the output folder must differ from the input folder")
    files = find_images(input_dir, recursive)
    if not out.is_relative_to(src):
        return files
    return [p for p in files if not p.resolve().is_relative_to(out)]


def output_names(rel_inputs: Sequence[Path], suffix: str = ".png") -> list[Path]:
    """Relative output paths ending in `suffix` (see the module docstring for the collision rule)."""
    plain = [rel.with_name(rel.stem + suffix) for rel in rel_inputs]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name.as_posix().lower()] = counts.get(name.as_posix().lower(), 0) + 1
    names = [rel.with_name(rel.name + suffix) if counts[p.as_posix().lower()] > 1 else p
             for rel, p in zip(rel_inputs, plain)]
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 1
        while candidate.as_posix().lower() in taken:
            n += 1
            candidate = name.with_name(f"{name.stem}-{n}{suffix}")
        taken.add(candidate.as_posix().lower())
        unique.append(candidate)
    return unique


def plan_jobs(files: Sequence[Path], input_dir: Path, output_dir: Path, fmt: str = "png") -> list[Job]:
    """A Job per file, in sorted order, with collision-free output names (`<stem>.<fmt>`)."""
    rels = [f.relative_to(input_dir) for f in files]
    return [Job(i, f, output_dir / out, rel.as_posix(), out.as_posix())
            for i, (f, rel, out) in enumerate(zip(files, rels, output_names(rels, f".{fmt}")))]


# ----------------------------------------------------------------------------- decoding


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


def make_loader(dataset: ImageFileDataset, batch_size: int, workers: int,
                pin_memory: bool) -> torch.utils.data.DataLoader:
    """An in-order DataLoader over `dataset` (workers > 0 decode in parallel)."""
    extra: dict[str, Any] = {"prefetch_factor": 2, "worker_init_fn": quiet_worker_shutdown} if workers > 0 else {}
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                       collate_fn=collate_samples, pin_memory=pin_memory, **extra)


# ----------------------------------------------------------------------------- forward


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error."""
    return isinstance(exc, torch.cuda.OutOfMemoryError)


class AdaptiveForward:
    """Runs batches through `run`; an out-of-memory error halves the batch and retries.

    The smaller size is kept for the rest of the run. At batch size 1 the error is final.
    """

    def __init__(self, run: Callable[[torch.Tensor], PairResult], batch_size: int,
                 on_oom: Callable[[], None] | None = None) -> None:
        self.run = run
        self.limit = batch_size
        self.on_oom = on_oom or _free_cuda_cache

    def __call__(self, x: torch.Tensor) -> Iterator[tuple[int, PairResult]]:
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


def slice_result(result: PairResult, i: int, copy: bool = False) -> PairResult:
    """Image `i` of a batch result as a one-image PairResult (`copy`: own its memory)."""
    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            part = value[i:i + 1]
            return part.clone() if copy else part
        if isinstance(value, np.ndarray):
            return value[i:i + 1].copy() if copy else value[i:i + 1]
        return value

    def cut_out(out: CamOutput) -> CamOutput:
        return CamOutput(**{k: cut(v) for k, v in vars(out).items()})

    return PairResult(cut(result.inputs), cut(result.pictures), cut_out(result.baseline), cut_out(result.nc),
                      cut(result.baseline_heat), cut(result.nc_heat), cut(result.baseline_neuron_heat),
                      cut(result.nc_neuron_heat))


def _number(value: float) -> float:
    """A float with 6 significant digits, so that the JSON stays short and stable."""
    return float(f"{value:.6g}")


def predictions(out: CamOutput, class_name: Callable[[int], str]) -> list[dict[str, Any]]:
    """One model's class index, name and probability for each image of a batch."""
    return [{"class": c, "name": class_name(c), "probability": _number(p)}
            for c, p in zip(out.target.tolist(), out.target_prob.tolist())]


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderStyle:
    """How a figure is drawn; picklable, so that a process pool can use it."""

    layout: str
    class_name: Callable[[int], str]
    cmap: str = "jet"
    alpha: float = 0.5
    panel_size: int | None = None
    top_k: int = 8
    rank_by: str = "contribution"
    compress_level: int = 1
    tag: str = ""                 # settings_tag() of the run, written into every figure
    scale: str = "panel"          # how the maps were normalised (the colour bar says it)
    colorbar: bool | None = None  # None: on with scale "shared" only
    method: str = "cam"           # named in the map columns' titles when not cam
    fmt: str = "png"              # png, pdf or svg
    meta: tuple[tuple[str, str], ...] = ()  # the run's provenance (figure_meta), in every figure


def build_figure(result: PairResult, name: str, style: RenderStyle) -> Figure:
    """One image's figure (compare or neurons layout), carrying what it says of itself (figure_text)."""
    if style.layout == "compare":
        figure = compare_figure(result, style.class_name, cmap=style.cmap, alpha=style.alpha,
                                panel_size=style.panel_size, names=[name], scale=style.scale,
                                colorbar=style.colorbar, method=style.method)
    else:
        from .workflows import neuron_diversity

        figure = neurons_figure(result, style.class_name, style.top_k, cmap=style.cmap, alpha=style.alpha,
                                panel_size=style.panel_size, names=[name], diversity=neuron_diversity(result),
                                rank_by=style.rank_by, scale=style.scale, colorbar=style.colorbar)
    figure.meta = figure_text(result, style) or {}
    return figure


def render_png(result: PairResult, name: str, style: RenderStyle) -> bytes:
    """The PNG bytes of one image's figure, with the provenance, the settings' tag and the predictions."""
    figure = build_figure(result, name, style)
    return encode_png(compose_array(figure), style.compress_level, figure.meta)


def render_vector(result: PairResult, name: str, style: RenderStyle) -> bytes:
    """The PDF or SVG bytes of one image's figure (`style.fmt`)."""
    return encode(build_figure(result, name, style), style.fmt)


def figure_text(result: PairResult, style: RenderStyle) -> dict[str, str] | None:
    """What a figure says of itself: the settings' tag and both models' predictions, so that a
    resumed run keeps a skipped figure's record even when no summary.json was written."""
    text = dict(style.meta)
    if style.tag:
        record = {"baseline": predictions(result.baseline, style.class_name)[0],
                  "nc": predictions(result.nc, style.class_name)[0]}
        text.update({TAG_KEY: style.tag, RECORD_KEY: json.dumps(record, sort_keys=True)})
    return text or None


def render_and_write(result: PairResult, name: str, output: Path, style: RenderStyle) -> str | None:
    """Render, encode and atomically write one figure; the reason when the write fails."""
    try:
        data = render_png(result, name, style) if style.fmt == "png" else render_vector(result, name, style)
    except Exception as exc:  # noqa: BLE001 - one image's problem is that image's failure
        log.debug("drawing %r failed", name, exc_info=True)
        return f"cannot draw its figure: {first_line(exc)}"
    try:
        atomic_write_bytes(output, data)
    except OSError as exc:
        return f"cannot write {output}: {exc.strerror or exc}"
    return None


def _quiet_render_worker() -> None:
    """Render processes leave Ctrl-C to the main process, which shuts the pool down."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_render_pool(kind: str, threads: int) -> Executor:
    """A thread pool, or a process pool (forkserver, so no fork of a threaded torch)."""
    if kind == "process":
        import multiprocessing

        return ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("forkserver"),
                                   initializer=_quiet_render_worker)
    return ThreadPoolExecutor(threads, thread_name_prefix="ncviz-render")


# ----------------------------------------------------------------------------- events


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


def written_record(job: Job, baseline: dict[str, Any], nc: dict[str, Any]) -> dict[str, Any]:
    return {"input": job.rel_input, "output": job.rel_output, "status": "written", "baseline": baseline, "nc": nc}


def skipped_record(job: Job, text: dict[str, str]) -> dict[str, Any]:
    """A figure kept from an earlier run; its predictions are those it carries."""
    record: dict[str, Any] = {"input": job.rel_input, "output": job.rel_output, "status": "skipped"}
    try:
        predicted = json.loads(text[RECORD_KEY])
        record.update(baseline=predicted["baseline"], nc=predicted["nc"])
    except (KeyError, ValueError, TypeError):
        pass
    return record


def kept_figure(output: Path, tag: str) -> dict[str, str] | None:
    """The text of `output` when it is a whole figure that these settings drew, else None.

    Only PNG figures carry the tag (a tEXt chunk): a PDF or SVG figure is never kept."""
    if output.suffix.lower() != ".png":
        return None
    text = png_text(output)
    return text if text.get(TAG_KEY) == tag and png_intact(output) else None


def run_shard(pair: ModelPair, jobs: Sequence[Job], options: BatchOptions, events: BatchEvents,
              tag: str = "", meta: dict[str, str] | None = None) -> dict[int, dict[str, Any]]:
    """Process this rank's jobs; return their summary records by global index.

    With `skip_existing`, a figure is kept only when it is whole and its tag is `tag`: one
    drawn with other settings (another layout, models, colormap, ...), or by an interrupted
    run of other settings, is drawn again.
    """
    if options.skip_existing and options.fmt != "png":
        log.warning("--skip-existing keeps PNG figures only: every %s figure is drawn again", options.fmt.upper())
    kept = {j.index: text for j in jobs if options.skip_existing and (text := kept_figure(j.output, tag))}
    todo = [j for j in jobs if j.index not in kept]
    state = ShardRun(pair, todo, options, events, tag, tuple(sorted((meta or {}).items())))
    for job in jobs:
        if job.index in kept:
            state.records[job.index] = skipped_record(job, kept[job.index])
    events.start(len(jobs), len(todo))
    if todo:
        _stream(state)
    return state.records


def _stream(state: ShardRun) -> None:
    """Decode, forward, render: the streaming loop with its clean shutdown."""
    opts, pair = state.options, state.pair
    workers = default_workers() if opts.workers is None else opts.workers
    threads = default_render_threads() if opts.render_threads is None else opts.render_threads
    on_cuda = pair.device.type == "cuda"
    target = pair.parse_target(opts.target)
    dataset = ImageFileDataset([j.source for j in state.jobs], pair.preprocess)
    batch_size = opts.batch_size or default_batch_size(pair.device)
    loader = iter(make_loader(dataset, batch_size, workers, pin_memory=on_cuda))

    def run(x: torch.Tensor) -> PairResult:
        return pair.run(x, target, opts.method, opts.scale, opts.neuron_k, opts.rank_by, opts.precision)

    forward = AdaptiveForward(run, batch_size)
    style = RenderStyle(opts.layout, pair.baseline.meta.class_name, opts.cmap, opts.alpha, opts.panel_size,
                        opts.top_k, opts.rank_by, opts.compress_level, state.tag, scale=opts.scale,
                        colorbar=opts.colorbar, method=opts.method, fmt=opts.fmt, meta=state.meta)
    pool = make_render_pool(opts.render_pool, threads)
    max_pending = batch_size + 2 * threads
    try:
        for batch in loader:
            _handle_batch(state, batch, forward, pool, style, max_pending)
        while state.pending:
            state.wait_oldest()
    finally:
        _shutdown(loader, pool, state)


def _handle_batch(state: ShardRun, batch: LoadedBatch, forward: AdaptiveForward, pool: Executor,
                  style: RenderStyle, max_pending: int) -> None:
    for position, reason in batch.failures:
        state.fail(state.jobs[position], reason)
    if batch.x is None:
        return
    for position, size in zip(batch.positions, batch.sizes):
        state.tiny.check(state.jobs[position].source, size)
    copy = state.options.render_pool == "process"
    for offset, result in forward(batch.x):
        base, nc = predictions(result.baseline, style.class_name), predictions(result.nc, style.class_name)
        for i in range(len(result.pictures)):
            job = state.jobs[batch.positions[offset + i]]
            record = written_record(job, base[i], nc[i])
            future: Future = pool.submit(render_and_write, slice_result(result, i, copy), job.rel_input,
                                         job.output, style)
            state.pending.append((future, job, record))
            while len(state.pending) > max_pending:
                state.wait_oldest()
    state.collect_finished()


def _shutdown(loader: Iterator, pool: Executor, state: ShardRun) -> None:
    """Stop decode workers and the render pool; writes in flight finish (atomically)."""
    for future, _job, _record in state.pending:
        future.cancel()
    pool.shutdown(wait=True, cancel_futures=True)
    stop_workers = getattr(loader, "_shutdown_workers", None)
    if stop_workers is not None:
        stop_workers()
    state.events.finish()


# ----------------------------------------------------------------------------- distributed


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


def gather_records(records: dict[int, dict[str, Any]], shard: Shard,
                   failure: BaseException | None = None) -> dict[int, dict[str, Any]]:
    """Every rank's records, merged (every rank gets them, so all agree on the exit status).

    A rank whose work raised still takes part, with its error, so that no rank waits for it
    forever; then the failed rank raises its own error and every other rank names it.
    """
    if shard.world == 1:
        if failure is not None:
            raise failure
        return records
    import torch.distributed as dist

    parts: list[Any] = [None] * shard.world
    dist.all_gather_object(parts, (records, None if failure is None else first_line(failure)))
    if failure is not None:
        raise failure
    failed = [(rank, reason) for rank, (_, reason) in enumerate(parts) if reason is not None]
    if failed:
        rank, reason = failed[0]
        raise NcVizError(f"rank {rank} of {shard.world} failed: {reason}")
    merged: dict[int, dict[str, Any]] = {}
    for part, _ in parts:
        merged.update(part)
    return merged


def rank_device(device: str, shard: Shard) -> str:
    """Under torchrun, `auto`/`cuda` means this rank's own GPU (LOCAL_RANK)."""
    if shard.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{shard.local_rank}"
    return device


# ----------------------------------------------------------------------------- summary


@dataclass
class BatchSummary:
    """The outcome of a run (all ranks merged)."""

    output_dir: Path
    data: dict[str, Any]

    @property
    def totals(self) -> dict[str, int]:
        return self.data["totals"]


def run_settings(options: BatchOptions, checkpoints: tuple[Path, Path], model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What decides how a figure looks, the models by content (sha256): kept in summary.json;
    its tag is written into every figure for --skip-existing."""
    models = {role: {"path": str(path), "sha256": file_sha256(path)} for role, path in zip(("baseline", "nc"), checkpoints)}
    models.update({key: model_kwargs.get(key) for key in ("arch", "nc_arch")})
    neurons = options.layout == "neurons"
    return {"layout": options.layout, "top_k": options.top_k if neurons else None,
            "rank_by": options.rank_by if neurons else None, "method": options.method, "target": options.target,
            "scale": options.scale, "cmap": options.cmap, "alpha": options.alpha,
            "panel_size": options.panel_size, "precision": options.precision, "models": models,
            "colorbar": resolve_colorbar(options.colorbar, options.scale), "format": options.fmt,
            **option_settings(model_kwargs)}


def settings_tag(settings: dict[str, Any]) -> str:
    """A short digest of the settings, paths left out (a moved checkpoint draws the same figures)."""
    models = {k: (v["sha256"] if isinstance(v, dict) else v) for k, v in settings["models"].items()}
    text = json.dumps({**settings, "models": models}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def build_summary(records: dict[int, dict[str, Any]], input_dir: Path, settings: dict[str, Any],
                  provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json's content: settings, provenance, totals, one record per image in sorted order."""
    images = [records[i] for i in sorted(records)]
    totals = {"images": len(images)}
    totals.update({key: sum(r["status"] == status for r in images)
                   for key, status in (("written", "written"), ("skipped", "skipped"), ("failed", "failed"))})
    return {
        "schema": SUMMARY_SCHEMA,
        "input_dir": str(input_dir),
        "settings": settings,
        "settings_tag": settings_tag(settings),
        "provenance": provenance,
        "totals": totals,
        "images": images,
    }


def read_previous(output_dir: Path) -> dict[str, Any] | None:
    """An earlier summary.json in `output_dir` (None if there is none, or it is unreadable)."""
    try:
        data = json.loads((output_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_if_changed(path: Path, data: bytes) -> Path:
    """Atomically write `data` unless `path` already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    return atomic_write_bytes(path, data)


def write_reports(output_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json and index.html (rank 0 only)."""
    text = json.dumps(json_safe(summary), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_if_changed(output_dir / SUMMARY_NAME, text.encode("utf-8"))
    write_if_changed(output_dir / INDEX_NAME, readable(gallery_html(summary)).encode("utf-8"))


# ----------------------------------------------------------------------------- gallery

_GALLERY_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em}
.totals{color:#555}
.grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;padding:.5em;background:#fff;border:1px solid #ddd;border-radius:4px;max-width:100%}
figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:.85em;margin-top:.4em;line-height:1.4}
.name{font-weight:600;word-break:break-all}
.failed li{color:#a00;word-break:break-all}
.provenance{font-size:.85em;color:#444}
.provenance table{border-collapse:collapse}
.provenance th,.provenance td{text-align:left;padding:.1em .8em .1em 0;word-break:break-all}
"""


def _describe(model: str, prediction_: dict[str, Any] | None) -> str:
    if not prediction_:
        return f"{model}: (not recorded)"
    return f"{model}: {prediction_['name']} ({prediction_['probability']:.0%}, class {prediction_['class']})"


def _figure_media(href: str, alt: str) -> str:
    """How the gallery shows a figure: an image (PNG, SVG), or an embedded PDF with a link."""
    if href.lower().endswith(".pdf"):
        return (f'<object data="{href}" type="application/pdf" width="640" height="480">'
                f'<a href="{href}">{alt} (PDF)</a></object><br><a href="{href}">open the PDF</a>')
    return f'<a href="{href}"><img src="{href}" alt="{alt}"></a>'


def _figure_html(record: dict[str, Any]) -> str:
    from html import escape

    link = escape(href(record["output"]), quote=True)
    name = escape(record["input"])
    lines = [f'<span class="name">{name}</span>', escape(_describe("Baseline", record.get("baseline"))),
             escape(_describe("NC", record.get("nc")))]
    return (f'<figure>{_figure_media(link, escape(record["input"], quote=True))}'
            f'<figcaption>{"<br>".join(lines)}</figcaption></figure>')


def gallery_html(summary: dict[str, Any]) -> str:
    """index.html: every figure with both models' predictions; relative links, no external resources."""
    from html import escape

    images = summary["images"]
    totals = summary["totals"]
    figures = [_figure_html(r) for r in images if r.get("output")]
    failed = [f"<li>{escape(r['input'])}: {escape(r.get('error') or '')}</li>"
              for r in images if r["status"] == "failed"]
    title = f"ncviz batch: {escape(summary['input_dir'])}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>", f"<style>{_GALLERY_CSS}</style>", "</head>", "<body>",
        f"<h1>{title}</h1>", *provenance_html(summary.get("provenance")),
        (f'<p class="totals">{totals["images"]} images: {totals["written"]} written, {totals["skipped"]} skipped, '
         f'{totals["failed"]} failed; layout {escape(summary["settings"]["layout"])}</p>'),
        '<div class="grid">', *figures, "</div>",
    ]
    if failed:
        parts += ["<h2>Failed</h2>", '<ul class="failed">', *failed, "</ul>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- entry point


def _run_rank(model_kwargs: dict[str, Any], out: Path, jobs: Sequence[Job], options: BatchOptions,
              events: BatchEvents, settings: dict[str, Any], rank: int,
              lock: FolderLock | None = None) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """This process's part: load the pair, check it, render its shard of the jobs.
    Returns the records and the run's provenance."""
    pair = load_model_pair(**model_kwargs)
    if options.layout == "neurons":
        from .workflows import check_top_k

        check_top_k(pair, options.top_k)
    pair.parse_target(options.target)  # a bad --target fails here, before anything is created
    check_figure_shape(*figure_shape(options, pair), "--panel-size or --top")
    provenance = run_provenance(pair, options, settings)
    tag = settings_tag(settings)
    out.mkdir(parents=True, exist_ok=True)
    if lock is not None:
        lock.acquire()
    if rank == 0:
        drop_stale_reports(out, tag)
    return run_shard(pair, jobs, options, events, tag, figure_meta(provenance)), provenance


def run_provenance(pair: ModelPair, options: BatchOptions, settings: dict[str, Any]) -> dict[str, Any]:
    """The provenance of this run; the checkpoints' hashes come from `settings` (hashed once)."""
    neurons = options.layout == "neurons"
    hashes = {role: settings["models"][role]["sha256"] for role in ("baseline", "nc")}
    return build_provenance(pair, method=options.method, target=options.target, cmap=options.cmap,
                            alpha=options.alpha, scale=options.scale, top_k=options.top_k if neurons else None,
                            rank_by=options.rank_by, precision=options.precision, hashes=hashes)


def check_layout(src: Path, out: Path, jobs: Sequence[Job], model_kwargs: dict[str, Any]) -> None:
    """Before any work: no figure lands in the input folder, no report is one of its folders,
    and no output is a checkpoint (or another file the run reads)."""
    reports = (SUMMARY_NAME, INDEX_NAME)
    check_batch_layout(src, out, [j.output for j in jobs], reports)
    check_outputs_distinct(model_inputs(model_kwargs), [*(out / name for name in reports), *(j.output for j in jobs)])


def figure_shape(options: BatchOptions, pair: ModelPair) -> tuple[int, int, int]:
    """(rows, columns, panel side) of one image's figure, as figures.py lays it out."""
    panel = options.panel_size or max(pair.preprocess.input_size, 192)
    return (2, 1 + options.top_k, panel) if options.layout == "neurons" else (1, 3, panel)


def drop_stale_reports(output_dir: Path, tag: str) -> None:
    """Remove summary.json and index.html of a run with other settings: they would describe
    figures this run replaces, if it is interrupted before writing its own."""
    previous = read_previous(output_dir)
    if previous is not None and previous.get("settings_tag") != tag:
        for name in (SUMMARY_NAME, INDEX_NAME):
            (output_dir / name).unlink(missing_ok=True)


def run_batch(input_dir: str | os.PathLike, output_dir: str | os.PathLike, *, model_kwargs: dict[str, Any],
              options: BatchOptions = BatchOptions(), events: BatchEvents | None = None) -> BatchSummary:
    """One figure per image of `input_dir` into `output_dir`, plus summary.json and index.html.

    Works alone or as one rank under torchrun. Raises KeyboardInterrupt after a clean
    shutdown (no partial file is left); bad images are recorded, not raised.
    """
    events = events or BatchEvents()
    options.check()
    src, out = Path(input_dir), Path(output_dir)
    files = discover(src, out, options.recursive)
    if not files:
        hint = "" if options.recursive else " (use --recursive for subfolders)"
        raise NcVizError(f"{src}: no image files{hint}")
    jobs = plan_jobs(files, src, out, options.fmt)
    check_layout(src, out, jobs, model_kwargs)
    settings = run_settings(options, checkpoint_paths(model_kwargs.get("baseline"), model_kwargs.get("nc")),
                            model_kwargs)
    check_writable(out, folder=True)
    shard = Shard.from_env()
    kwargs = dict(model_kwargs, device=rank_device(model_kwargs.get("device") or "auto", shard))
    started = time.perf_counter()
    with process_group(shard), FolderLock(out, shard.rank) as lock:
        records: dict[int, dict[str, Any]] = {}
        provenance: dict[str, Any] | None = None
        failure: Exception | None = None
        try:
            records, provenance = _run_rank(kwargs, out, shard.take(jobs), options, events, settings, shard.rank,
                                            lock)
        except Exception as exc:  # noqa: BLE001 - handed to gather_records, which raises it
            failure = exc
        merged = gather_records(records, shard, failure)
        summary = flag_summary(build_summary(merged, src, settings, provenance))
        if shard.rank == 0:  # still under the lock
            write_reports(out, summary)
    log.info("%d images in %.1f s", len(jobs), time.perf_counter() - started)
    return BatchSummary(out, summary)
