"""`ncviz batch`: one figure per image of a folder, streamed: a bad file is reported and skipped,
never the end of the run, and the host side hides behind the forward passes.

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

Modules: `options`, `plan` (files and names), `shard` (one process's part, the figure-writer
consumer of `nc_viz.engine`), `figures` (render + encode + write), `summary`, `gallery`,
`runner` (`run_batch`). Decoding, the device loop and torchrun live in `nc_viz.engine`.
"""
from __future__ import annotations

from ...core.errors import NcVizError, UsageError  # noqa: F401 - resolvable as before the split
from ...engine.decode import (ImageFileDataset, LoadedBatch, Sample, collate_samples, make_loader,
    quiet_worker_shutdown)
from ...engine.device import AdaptiveForward, is_out_of_memory, rank_device
from ...engine.distributed import Shard, gather_records, process_group
from ...engine.workers import default_render_threads, default_workers, usable_cores
from .figures import (RenderStyle, build_figure, figure_text, make_render_pool, predictions, render_and_write,
    render_png, render_vector, slice_result)
from .gallery import gallery_html
from .options import (INDEX_NAME, LAYOUTS, RECORD_KEY, RENDER_POOLS, SUMMARY_NAME, SUMMARY_SCHEMA, TAG_KEY,
    BatchOptions)
from .plan import Job, discover, output_names, plan_jobs
from .runner import check_layout, figure_shape, run_batch, run_provenance
from .shard import BatchEvents, FigureWriter, ShardRun, kept_figure, run_shard
from .summary import (BatchSummary, build_summary, drop_stale_reports, read_previous, run_settings, settings_tag,
    write_if_changed, write_reports)

__all__ = [
    "AdaptiveForward", "BatchEvents", "BatchOptions", "BatchSummary", "FigureWriter", "INDEX_NAME", "ImageFileDataset",
    "Job", "LAYOUTS", "LoadedBatch", "RECORD_KEY", "RENDER_POOLS", "RenderStyle", "SUMMARY_NAME", "SUMMARY_SCHEMA",
    "Sample", "Shard", "ShardRun", "TAG_KEY", "build_figure", "build_summary", "check_layout", "collate_samples",
    "default_render_threads", "default_workers", "discover", "drop_stale_reports", "figure_shape", "figure_text",
    "gallery_html", "gather_records", "is_out_of_memory", "kept_figure", "make_loader", "make_render_pool",
    "output_names", "plan_jobs", "predictions", "process_group", "quiet_worker_shutdown", "rank_device",
    "read_previous", "render_and_write", "render_png", "render_vector", "run_batch", "run_provenance", "run_settings",
    "run_shard", "settings_tag", "slice_result", "usable_cores", "write_if_changed", "write_reports",
]
