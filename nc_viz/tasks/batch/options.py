"""`BatchOptions` and the constants of a folder run."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...pair import autocast_dtype
from ...core.errors import ParameterError, UsageError
from ...figures.layouts import get_layout, layout_names
from ...figures.raster import FORMATS
from ...figures.style import MapStyle

SUMMARY_NAME = "summary.json"
INDEX_NAME = "index.html"
SUMMARY_SCHEMA = "ncviz.batch/2"
TAG_KEY = "ncviz-settings"  # tEXt chunk of every figure: the tag of the settings that drew it
RECORD_KEY = "ncviz-predictions"  # tEXt chunk: both models' class and probability (JSON)
RENDER_POOLS = ("auto", "thread", "process")
# `auto` draws in processes on machines of AUTO_PROCESS_CORES cores or more, for runs of
# AUTO_PROCESS_FIGURES figures or more. On one H200 host (16 cores) eight render threads drew
# about 1.3 times what one did: the Python lock was the limit. On this 2-core machine threads
# drew as fast (the demo pair, benchmarks/bench_host.py: compare 213-230 figures/s in threads,
# 206-214 in processes; neurons 69-83 and 81-90), without the processes' start (about 1.5 s).
AUTO_PROCESS_CORES = 8
AUTO_PROCESS_FIGURES = 64


@dataclass(frozen=True)
class BatchOptions:
    """Everything `run_batch` does besides the models; the defaults are the CLI's."""

    layout: str = "compare"
    top_k: int = 8
    rank_by: str = "contribution"
    target: str | None = None
    targets: str | os.PathLike | None = None  # CSV of image,class rows (`targets.read_targets`)
    style: MapStyle = field(default_factory=MapStyle)  # method, scale, cmap, alpha, panel size, colour bar
    precision: str = "fp32"
    batch_size: int | None = None       # None: figure_batch_size(the models' device, input size)
    workers: int | None = None          # DataLoader workers; None: default_workers()
    render_threads: int | None = None   # None: default_render_threads()
    render_pool: str = "thread"         # "thread", "process", or "auto" (`render_pool_for`; the CLI's
                                        # default: processes need the caller's script importable)
    recursive: bool = False
    skip_existing: bool = False
    compress_level: int = 1             # zlib level of the figures' PNGs (see encode_png)
    fmt: str = "png"                    # png, pdf or svg

    def check(self) -> None:
        """Option checks that need no model (UsageError on the first bad one)."""
        get_layout(self.layout)  # ParameterError naming `layout`
        if self.render_pool not in RENDER_POOLS:
            raise UsageError(f"render pool {self.render_pool!r}: choose from {', '.join(RENDER_POOLS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ParameterError("batch_size", f"{{param}} {self.batch_size}: must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise ParameterError("workers", f"{{param}} {self.workers}: must be 0 or more")
        if self.fmt not in FORMATS:
            raise ParameterError("fmt", f"{{param}} {self.fmt}: choose from {', '.join(FORMATS)}")
        if not 0 <= self.compress_level <= 9:
            raise UsageError(f"PNG compression level {self.compress_level}: use 0..9")
        if self.render_threads is not None and self.render_threads < 1:
            raise ParameterError("render_threads", f"{{param}} {self.render_threads}: must be at least 1")
        autocast_dtype(self.precision)
        self.style.check()
        if self.draws_neurons:
            from ..figures import check_neuron_options

            check_neuron_options(self.top_k, self.style.method, self.rank_by)

    @property
    def draws_neurons(self) -> bool:
        """Whether the layout draws top-k neuron maps (`top_k` and `rank_by` apply)."""
        return get_layout(self.layout).neurons

    def figure_shape(self, input_size: int) -> tuple[int, int, int]:
        """(rows, columns, panel side) of one image's figure, as the layout lays it out, for
        models of `input_size` (the panel side when `style.panel_size` does not say)."""
        panel = self.style.panel_size or max(input_size, 192)
        return (*get_layout(self.layout).grid(self.top_k), panel)

    def render_pool_for(self, figures: int, cores: int) -> str:
        """The pool that draws `figures` figures on `cores` cores: `render_pool`, with `auto`
        meaning processes (each with its own Python lock) from AUTO_PROCESS_CORES cores and
        AUTO_PROCESS_FIGURES figures on, else threads."""
        if self.render_pool != "auto":
            return self.render_pool
        many = figures >= AUTO_PROCESS_FIGURES and cores >= AUTO_PROCESS_CORES
        return "process" if many else "thread"

    @property
    def neuron_k(self) -> int:
        """Top-k neurons the forward pass must return (0 for a layout without neuron maps)."""
        return self.top_k if self.draws_neurons else 0
