"""CAM methods by name, in one registry: what each is, costs and supports.

One `CamMethod` per `method` value. The CLI's choices and help, the engine's dispatch
(`cams.compute`), the neuron commands' check and the figures' column titles all read this
registry; adding a method is one `register(...)` call here (and its test). No torch here, so
the CLI can list the methods without importing it.

A method is computed one of three ways: `exact` (only `cam`: the engine's one forward pass,
the map is exactly sum_k w_k^c f_k of the pooled features); `grad_cam`, the name of a class of
the grad-cam package; or `compute(model, x, target) -> CamOutput`, a function of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import ParameterError
from ..core.registry import NamedRegistry

__all__ = ["CamMethod", "METHOD_REGISTRY", "register", "unregister", "get_method", "method_names",
           "neuron_methods", "method_help", "method_label"]


@dataclass(frozen=True)
class CamMethod:
    """One CAM method: its name, its cost (for the help) and what it supports."""

    name: str                 # the `method` value, lower case
    label: str                # how a figure names it in its column titles (e.g. "Grad-CAM")
    cost: str                 # what one image costs, one line for the help
    exact: bool = False       # the exact CAM contract: pooled features x linear classifier
    neurons: bool = False     # top-k neuron maps (the CAM decomposition) are available
    grad_cam: str | None = None   # class name in pytorch_grad_cam that computes it
    compute: Callable[..., Any] | None = None  # (model, x, target) -> CamOutput, a method of its own

    def __post_init__(self) -> None:
        ways = sum((self.exact, self.grad_cam is not None, self.compute is not None))
        if ways != 1:
            raise ValueError(f"method {self.name!r}: give exactly one of exact, grad_cam, compute")
        if self.name != self.name.lower():
            raise ValueError(f"method {self.name!r}: names are lower case")
        if self.neurons and not self.exact:
            raise ValueError(f"method {self.name!r}: neuron maps need the exact CAM decomposition")


_REGISTRY: NamedRegistry[CamMethod] = NamedRegistry("method")
METHOD_REGISTRY = _REGISTRY.items  # name -> CamMethod, in registration order
register = _REGISTRY.register
unregister = _REGISTRY.unregister


def method_names() -> tuple[str, ...]:
    """The registered names in registration order (the `method` choices)."""
    return _REGISTRY.names()


def neuron_methods() -> tuple[str, ...]:
    """The methods that give top-k neuron maps."""
    return _REGISTRY.names(lambda item: item.neurons)


def get_method(name: str) -> CamMethod:
    """The method called `name` (any case); a ParameterError naming `method` otherwise."""
    method = METHOD_REGISTRY.get(str(name).lower())
    if method is None:
        raise ParameterError("method", f"{{param}} {name!r}: unknown method; choose from "
                                       f"{', '.join(METHOD_REGISTRY)}")
    return method


def method_label(name: str) -> str:
    """How a figure names the method (`Grad-CAM`); the name itself for an unknown one."""
    method = METHOD_REGISTRY.get(name.lower())
    return method.label if method is not None else name


def method_help() -> str:
    """The help of `method`: each cost once, after the methods that share it, in registry order."""
    groups: dict[str, list[str]] = {}
    for method in METHOD_REGISTRY.values():
        groups.setdefault(method.cost, []).append(method.name)
    return " ".join(f"{', '.join(names)}: {cost}." for cost, names in groups.items())


_GRADIENT_COST = ("one forward and one backward pass per image (about 1.6x cam on these GAP+FC networks, "
                  "where gradcam equals ReLU(cam) up to scale)")
_PER_CHANNEL_COST = ("one forward pass per channel of the last layer (2048 for ResNet-50/101: minutes per "
                     "image on a CPU)")

register(CamMethod("cam", "CAM", "exact, from one forward pass", exact=True, neurons=True))
register(CamMethod("gradcam", "Grad-CAM", _GRADIENT_COST, grad_cam="GradCAM"))
register(CamMethod("gradcam++", "Grad-CAM++", _GRADIENT_COST, grad_cam="GradCAMPlusPlus"))
register(CamMethod("hirescam", "HiResCAM", _GRADIENT_COST, grad_cam="HiResCAM"))
register(CamMethod("xgradcam", "XGrad-CAM", _GRADIENT_COST, grad_cam="XGradCAM"))
register(CamMethod("layercam", "LayerCAM", _GRADIENT_COST, grad_cam="LayerCAM"))
register(CamMethod("eigencam", "Eigen-CAM", "one forward pass and an SVD", grad_cam="EigenCAM"))
register(CamMethod("scorecam", "Score-CAM", _PER_CHANNEL_COST, grad_cam="ScoreCAM"))
register(CamMethod("ablationcam", "Ablation-CAM", _PER_CHANNEL_COST, grad_cam="AblationCAM"))
