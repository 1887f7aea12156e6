"""The figure writer: one image's figure rendered, encoded and written atomically, in a
thread or process pool."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...pair import PairResult
from ...cams.compute import CamOutput
from ...core.errors import first_line
from ...figures.layouts import get_layout
from ...core.io import atomic_write_bytes
from ...figures.png import encode_png
from ...figures.raster import Figure, compose_array, encode
from ...figures.style import MapStyle
from .handoff import SharedRenderPool
from .options import RECORD_KEY, TAG_KEY

log = logging.getLogger(__name__)


def slice_result(result: PairResult, i: int, copy: bool = False) -> PairResult:
    """Image `i` of a batch result as a one-image PairResult (`copy`: own its memory)."""
    return result.images(i, copy)


def _number(value: float) -> float:
    """A float with 6 significant digits, so that the JSON stays short and stable."""
    return float(f"{value:.6g}")


def predictions(out: CamOutput, class_name: Callable[[int], str]) -> list[dict[str, Any]]:
    """One model's class index, name and probability for each image of a batch."""
    return [{"class": c, "name": class_name(c), "probability": _number(p)}
            for c, p in zip(out.target.tolist(), out.target_prob.tolist())]


@dataclass(frozen=True)
class RenderStyle:
    """How a figure is drawn; picklable, so that a process pool can use it."""

    layout: str
    class_name: Callable[[int], str]
    map_style: MapStyle = MapStyle()  # how the maps are drawn (method named when not cam, colour bar, ...)
    top_k: int = 8
    rank_by: str = "contribution"
    compress_level: int = 1
    tag: str = ""                 # settings_tag() of the run, written into every figure
    fmt: str = "png"              # png, pdf or svg
    meta: tuple[tuple[str, str], ...] = ()  # the run's provenance (figure_meta), in every figure


def build_figure(result: PairResult, name: str, style: RenderStyle) -> Figure:
    """One image's figure in `style.layout` (the layout registry), carrying what it says of itself
    (figure_text)."""
    figure = get_layout(style.layout).draw(result, style.class_name, [name], style.map_style,
                                           top_k=style.top_k, rank_by=style.rank_by)
    figure.meta = figure_text(result, style) or {}
    return figure


def render_png(result: PairResult, name: str, style: RenderStyle) -> bytes:
    """The PNG bytes of one image's figure, with the provenance, the settings' tag and the predictions."""
    figure = build_figure(result, name, style)
    return encode_png(compose_array(figure, reuse=True), style.compress_level, figure.meta, figure.dpi)


def render_vector(result: PairResult, name: str, style: RenderStyle) -> bytes:
    """The PDF or SVG bytes of one image's figure (`style.fmt`)."""
    return encode(build_figure(result, name, style), style.fmt)


def figure_text(result: PairResult, style: RenderStyle) -> dict[str, str] | None:
    """What a figure says of itself: the settings' tag and both models' predictions, so that a
    resumed run keeps a skipped figure's record even when no summary.json was written."""
    text = dict(style.meta)
    if style.tag:
        record = {role: predictions(part.out, style.class_name)[0] for role, part in result.roles.items()}
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


def _one_torch_thread() -> None:
    """A render thread's torch calls (resizing pictures) run on that thread alone: the pool
    is the parallelism, and nested OpenMP teams would spin against the forward passes. torch
    also keeps the count for threads started later: `FigureWriter.close` restores it."""
    torch.set_num_threads(1)


def make_render_pool(kind: str, threads: int, batch_size: int = 1, max_pending: int = 1,
                     fallback: bool = False) -> Executor | SharedRenderPool:
    """A thread pool, or a process pool fed through shared memory (`handoff.SharedRenderPool`,
    forkserver, so no fork of a threaded torch) for `batch_size` images a pass and `max_pending`
    figures in flight; `fallback`: threads when its shared memory cannot be had (else an error)."""
    def thread_pool() -> Executor:
        return ThreadPoolExecutor(threads, thread_name_prefix="ncviz-render", initializer=_one_torch_thread)

    if kind == "process":
        return SharedRenderPool(threads, batch_size, max_pending, thread_pool if fallback else None)
    return thread_pool()
