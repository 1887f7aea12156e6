"""Figure layouts by name (a registry): what one image's figure shows.

One `FigureLayout` per `layout` value of `ncviz batch`: its one-line summary for the help,
whether it draws top-k neuron maps (the forward pass must return them, so the method must
have them), the grid of one image's figure, and how to draw it from a `PairResult`. The CLI's
choices, the batch options' checks, the figure writer and the summary's settings all read this
registry; adding a layout is one `register(...)` call here (and its test). No torch at import
time: the figure functions are imported when a figure is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..core.errors import ParameterError
from ..core.registry import NamedRegistry

if TYPE_CHECKING:
    from ..pair import PairResult
    from .raster import Figure
    from .style import MapStyle

__all__ = ["FigureLayout", "LAYOUT_REGISTRY", "register", "unregister", "get_layout", "layout_names",
           "neuron_layouts", "layout_help"]


@dataclass(frozen=True)
class FigureLayout:
    """One figure layout: what it shows, what it needs, its grid and how it is drawn.

    `draw(result, class_name, names, style, top_k=..., rank_by=...)` gets how maps are drawn
    (a `MapStyle`) and the neuron settings of `ncviz batch` as keywords, and ignores those it
    does not use. `grid(top_k)` gives (rows, columns) per image, for the size check before any work.
    """

    name: str
    summary: str
    neurons: bool
    grid: Callable[[int], tuple[int, int]]
    draw: Callable[..., "Figure"]


_REGISTRY: NamedRegistry[FigureLayout] = NamedRegistry("layout")
LAYOUT_REGISTRY = _REGISTRY.items  # name -> FigureLayout, in registration order
register = _REGISTRY.register
unregister = _REGISTRY.unregister


def layout_names() -> tuple[str, ...]:
    """The registered names in registration order (the `layout` choices)."""
    return _REGISTRY.names()


def neuron_layouts() -> tuple[str, ...]:
    """The layouts that give top-k neuron maps."""
    return _REGISTRY.names(lambda item: item.neurons)


def get_layout(name: str) -> FigureLayout:
    """The layout called `name`; a ParameterError naming `layout` otherwise."""
    layout = LAYOUT_REGISTRY.get(name)
    if layout is None:
        raise ParameterError("layout", f"{{param}} {name}: choose from {', '.join(LAYOUT_REGISTRY)}")
    return layout


def layout_help() -> str:
    """The help of `layout`: each layout and its summary."""
    return "; ".join(f"{layout.name}: {layout.summary}" for layout in LAYOUT_REGISTRY.values()) + "."


def _draw_compare(result: "PairResult", class_name: Callable[[int], str], names: Sequence[str],
                  style: "MapStyle", **_neurons: Any) -> "Figure":
    from .build import compare_figure

    return compare_figure(result, class_name, style=style, names=names)


def _draw_neurons(result: "PairResult", class_name: Callable[[int], str], names: Sequence[str],
                  style: "MapStyle", *, top_k: int, rank_by: str, **_rest: Any) -> "Figure":
    from .build import neuron_diversity, neurons_figure

    return neurons_figure(result, class_name, top_k, style=style, names=names,
                          diversity=neuron_diversity(result), rank_by=rank_by)


register(FigureLayout("compare", "Input | CAM-Baseline | CAM-Ours", neurons=False,
                      grid=lambda top_k: (1, 3), draw=_draw_compare))
register(FigureLayout("neurons", "the top-k neuron maps of both models", neurons=True,
                      grid=lambda top_k: (2, 1 + top_k), draw=_draw_neurons))
