"""Figure layouts of the paper built from a PairResult: no computation, no files."""
from __future__ import annotations

from typing import Callable, Sequence

from .api import PairResult
from .cam import CamOutput
from .render import Figure, Panel, Row, overlay


def _prediction(out: CamOutput, i: int, class_name: Callable[[int], str]) -> str:
    c = int(out.target[i])
    return f"{class_name(c)} {float(out.target_prob[i]):.0%}"


def compare_figure(result: PairResult, class_name: Callable[[int], str],
                   titles: Sequence[str] = ("Input", "CAM-Baseline", "CAM-Ours"),
                   cmap: str = "jet", alpha: float = 0.5, panel_size: int | None = None,
                   names: Sequence[str] | None = None) -> Figure:
    """Figs. 1-2: one row per image, `Input | CAM-Baseline | CAM-Ours`, class and probability below."""
    rows = []
    for i, picture in enumerate(result.pictures):
        panels = [
            Panel(picture, caption=names[i] if names else ""),
            Panel(overlay(picture, result.baseline_heat[i].numpy(), cmap, alpha),
                  caption=_prediction(result.baseline, i, class_name)),
            Panel(overlay(picture, result.nc_heat[i].numpy(), cmap, alpha),
                  caption=_prediction(result.nc, i, class_name)),
        ]
        rows.append(Row(panels))
    size = panel_size or max(result.pictures.shape[1], 192)
    return Figure(rows, column_titles=list(titles), panel_size=size)
