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
`runner` (`run_batch`). Decoding, the device loop and torchrun live in `nc_viz.engine`. The
package itself gives what a caller needs: `run_batch`, `BatchOptions` and `BatchEvents`; every
other name is imported from its module.
"""
from __future__ import annotations

from .options import BatchOptions
from .runner import run_batch
from .shard import BatchEvents

__all__ = ["BatchEvents", "BatchOptions", "run_batch"]
