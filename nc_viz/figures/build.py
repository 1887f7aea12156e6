"""Figure layouts of the paper built from a PairResult: no computation, no files."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..pair import PairResult
from ..cams.compute import CamOutput, difference_heatmap
from ..core.limits import check_figure
from ..cams.methods import method_label
from ..core.names import clean_figure
from .raster import ColorBar, Figure, Panel, Row, colorize, overlay_many
from ..core.roles import ROLES
from ..metrics import neuron_map_diversity
from .style import MapStyle, resolve_colorbar  # noqa: F401 - resolve_colorbar re-exported

# What the colour of a map means, per `scale`; `{maps}` names the maps that share a scale.
SCALE_LEGENDS: dict[str, str] = {
    "shared": "shared per image: 0 = min, 1 = max of {maps}",
    "panel": "per panel: 0 = min, 1 = max of its own map",
}
DIFF_CMAP = "RdBu_r"  # diverging, white at zero: red where NC is higher
DIFF_TITLE = "NC − Baseline"
DIFF_LEGEND = "on the shared scale"  # under the NC − Baseline column: one panel wide


def method_titles(titles: Sequence[str], method: str = "cam") -> list[str]:
    """The map columns' titles (all but the first) with the method added when it is not cam,
    e.g. `CAM-Ours (Grad-CAM)`; a title that already names the method is kept."""
    label = method_label(method)
    if method.lower() == "cam":
        return list(titles)
    return [*titles[:1], *(t if label.lower() in t.lower() else f"{t} ({label})" for t in titles[1:])]


def scale_colorbar(cmap: str, scale: str, first: int, last: int, maps: str) -> ColorBar:
    """The colour bar of the heatmap columns `first`..`last`, labelled with what the scale is."""
    return ColorBar(cmap, SCALE_LEGENDS[scale].format(maps=maps), first, last)


def _prediction(out: CamOutput, i: int, class_name: Callable[[int], str]) -> str:
    c = int(out.target[i])
    return f"{class_name(c)} {float(out.target_prob[i]):.0%}"


def compare_figure(result: PairResult, class_name: Callable[[int], str],
                   titles: Sequence[str] = ("Input", "CAM-Baseline", "CAM-Ours"), *,
                   style: MapStyle = MapStyle(), names: Sequence[str] | None = None,
                   diff: bool = False, row_labels: Sequence[str] | None = None) -> Figure:
    """Figs. 1-2: one row per image, `Input | CAM-Baseline | CAM-Ours`, class and probability below.

    `style`: how the maps are drawn (`style.scale` says how `result` was normalised, for the
    colour bar; a `style.method` other than cam is named in the map columns' titles); `diff`:
    a fourth column, NC minus baseline on the shared scale (DIFF_CMAP, white at zero; titled
    DIFF_TITLE unless `titles` has four); `row_labels`: one label left of each image's row.
    `style.captions` False leaves out the file names and predictions.
    """
    cmap, alpha = style.cmap, style.alpha
    models = [result.roles[role] for role in ROLES]
    diffs = difference_heatmap(*(m.out.cam for m in models), result.pictures.shape[1]) if diff else None
    rows = []
    for i, picture in enumerate(result.pictures):
        tinted = overlay_many(picture, torch.stack([m.heat[i] for m in models]).numpy(), cmap, alpha)
        captions = [names[i] if names else "", *(_prediction(m.out, i, class_name) for m in models)]
        if not style.captions:
            captions = [""] * len(captions)
        panels = [Panel(picture, caption=captions[0]),
                  *(Panel(tinted[j], caption=captions[1 + j]) for j in range(len(models)))]
        if diffs is not None:
            panels.append(_difference_panel(diffs[i].numpy(), style.captions))
        rows.append(Row(panels, label=row_labels[i] if row_labels else ""))
    size = style.panel_size or max(result.pictures.shape[1], 192)
    columns = list(titles[:4 if diff else 3]) + ([DIFF_TITLE] if diff and len(titles) < 4 else [])
    bars = _compare_colorbars(cmap, style.scale, diff) if style.show_colorbar else ()
    figure = Figure(rows, column_titles=method_titles(columns, style.method), panel_size=size, colorbars=bars,
                    font_points=style.font_size, dpi=style.dpi)
    check_figure(figure)
    return clean_figure(figure)


def _difference_panel(diff: np.ndarray, caption: bool = True) -> Panel:
    """NC minus baseline in [-1, 1], coloured with DIFF_CMAP (0 at its centre), its extreme below."""
    text = f"max |Δ| = {float(np.abs(diff).max()):.2f}" if caption else ""
    return Panel(colorize((diff + 1.0) / 2.0, DIFF_CMAP), caption=text)


def _compare_colorbars(cmap: str, scale: str, diff: bool) -> list[ColorBar]:
    """Under the two CAM columns their scale; under the difference column its own (-1 .. +1)."""
    bars = [scale_colorbar(cmap, scale, 1, 2, "both maps")]
    if diff:
        bars.append(ColorBar(DIFF_CMAP, DIFF_LEGEND, 3, 3, ("−1", "0", "+1")))
    return bars


@dataclass(frozen=True)
class Diversity:
    """How alike one model's top-k neuron maps of one image are.

    `correlation`: mean pairwise Pearson correlation; `iou`: mean pairwise IoU of each
    map's top-`top_q` region. Both are NaN when there is no pair (k = 1).
    """

    correlation: float
    iou: float
    top_q: float = 0.2


def neuron_shares(out: CamOutput) -> torch.Tensor:
    """Each top neuron's share of the bias-free logit: r_k / sum over all channels of r.

    sum_k r_k = logit_c - b_c exactly on a pooling + linear head (`models.head`). A zero
    denominator gives NaN.
    """
    total = out.contributions.sum(dim=1, keepdim=True)
    safe = torch.where(total == 0, torch.ones_like(total), total)
    return torch.where(total == 0, torch.full_like(out.neuron_scores, math.nan), out.neuron_scores / safe)


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def _neuron_note(shares: Sequence[float], diversity: Diversity | None, rank_by: str) -> str:
    """`top k by <rank>: <total share> of logit - bias`, then the diversity when there is a pair."""
    k = len(shares)
    note = f"top {k} by {rank_by}: {_percent(float(sum(shares)))} of logit − bias"
    if diversity is None or k < 2:
        return note
    return (note + f" · mean pairwise corr {diversity.correlation:.2f}"
            f" · mean pairwise IoU of top-{diversity.top_q:.0%} regions {diversity.iou:.2f}")


def _neuron_panels(picture: np.ndarray, ids: Sequence[int], shares: Sequence[float], heat: torch.Tensor,
                   cmap: str, alpha: float) -> list[Panel]:
    """One panel per neuron: its map over the picture, titled `#channel · share`."""
    tinted = overlay_many(picture, heat[:len(ids)].numpy(), cmap, alpha)
    return [Panel(tinted[j], title=f"#{c} · {_percent(s)}") for j, (c, s) in enumerate(zip(ids, shares))]


def neurons_figure(result: PairResult, class_name: Callable[[int], str], top_k: int | None = None,
                   titles: Sequence[str] = ("Input", "Baseline", "Ours"), *, style: MapStyle = MapStyle(),
                   names: Sequence[str] | None = None,
                   diversity: Sequence[tuple[Diversity, Diversity]] | None = None,
                   rank_by: str = "contribution") -> Figure:
    """Fig. 3: per image a baseline row and an NC row: the input, then the top-k neuron maps.

    `titles`: the input column's title and the two row labels. Each neuron panel is titled
    `#channel · share` (share of logit - bias); the note under a row gives the model's
    top-k total share and, when `diversity` (per image: baseline, NC) is given, its diversity.
    `style` as in `compare_figure` (one bar under the neuron columns; the method is not named).
    """
    cmap, alpha = style.cmap, style.alpha
    models = [(result.roles[role].out, result.roles[role].neuron_heat) for role in ROLES]
    if any(out.neuron_ids is None or heat is None for out, heat in models):
        raise ValueError("the result has no neuron maps: run the pair with top_k > 0")
    available = models[0][0].neuron_ids.shape[1]
    k = min(top_k or available, available)
    rows = []
    for i, picture in enumerate(result.pictures):
        for m, (out, heat) in enumerate(models):
            shares = neuron_shares(out)[i, :k].tolist()
            first = Panel(picture, title=names[i] if names and m == 0 and style.captions else "",
                          caption=_prediction(out, i, class_name) if style.captions else "")
            panels = [first, *_neuron_panels(picture, out.neuron_ids[i, :k].tolist(), shares, heat[i], cmap, alpha)]
            note = _neuron_note(shares, diversity[i][m] if diversity else None, rank_by)
            rows.append(Row(panels, label=titles[1 + m], note=note, new_group=m == 0 and i > 0))
    size = style.panel_size or max(result.pictures.shape[1], 192)
    columns = [titles[0], *(f"Top-{j + 1}" for j in range(k))]
    bars = [scale_colorbar(cmap, style.scale, 1, k, "both rows' maps")] if style.show_colorbar else []
    figure = Figure(rows, column_titles=columns, panel_size=size, colorbars=bars, font_points=style.font_size,
                    dpi=style.dpi)
    check_figure(figure)
    return clean_figure(figure)


DIVERSITY_TOP_Q = 0.2


def neuron_diversity(result: PairResult, top_q: float = DIVERSITY_TOP_Q) -> list[tuple[Diversity, Diversity]]:
    """Per image, (baseline, NC) diversity of the top-k neuron maps (on |w_k f_k|, feature resolution)."""
    def one(out: CamOutput) -> list[Diversity]:
        corr, iou = neuron_map_diversity(out.neuron_maps, top_q)
        return [Diversity(c, i, top_q) for c, i in zip(corr.tolist(), iou.tolist())]

    return list(zip(*(one(result.roles[role].out) for role in ROLES)))
