"""Where a classifier's pooled features and its linear classifier are, and the CAM contract.

CAM, the neuron maps and the contributions are exact when `logits = W . mean_xy F(x) + b` for
the feature map `F` the head pools. A `Head` names, for one model class, the module
whose input (or output) is `F`, an activation the model applies to it before pooling (DenseNet's
final ReLU lives in `forward`, not in a module), the `nn.Linear` classifier, and the layer a
gradient method hooks. Families register their heads by model class (`register_head`); a model
can also carry its own (`set_head`). `check_cam_contract` verifies the contract numerically.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Head", "Contract", "register_head", "set_head", "head_of", "features_hook", "classifier_of",
           "target_layer", "check_cam_contract", "contract_from_forward", "ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu}
_ATTRIBUTE = "_ncviz_head"


@dataclass(frozen=True)
class Head:
    """Where the CAM features and the classifier of a model are (qualified module names)."""

    features: str                 # module whose input (`take="input"`) or output is F
    classifier: str               # the nn.Linear applied to mean_xy F
    target_layer: str             # the layer a gradient method (grad-cam) hooks
    take: str = "input"           # "input" | "output"
    activation: str | None = None  # applied to what the module gives (a key of ACTIVATIONS)

    def __post_init__(self) -> None:
        if self.take not in ("input", "output"):
            raise ValueError(f"Head.take must be 'input' or 'output', got {self.take!r}")
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise ValueError(f"Head.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")


@dataclass(frozen=True)
class Contract:
    """Whether `logits = classifier(mean_xy F)` holds for a model, and why not."""

    exact: bool
    reason: str = ""


_HEADS_BY_CLASS: dict[type | str, Head | Callable[[nn.Module], Head]] = {}
_CONTRACTS: "weakref.WeakKeyDictionary[nn.Module, Contract]" = weakref.WeakKeyDictionary()


def register_head(model_class: type | str, head: Head | Callable[[nn.Module], Head]) -> None:
    """Declare the head of every instance of `model_class` (or a function of the instance).

    `model_class` may be the class's qualified name (`"torchvision.models.densenet.DenseNet"`),
    so that a family registers its head without importing the package that defines the class."""
    _HEADS_BY_CLASS[model_class] = head


def set_head(model: nn.Module, head: Head) -> nn.Module:
    """Give one model its own head (e.g. a model of a class no family registers); returns it."""
    object.__setattr__(model, _ATTRIBUTE, head)
    _CONTRACTS.pop(model, None)
    return model


def head_of(model: nn.Module) -> Head:
    """The head of `model`: its own, else its class's (nearest base class first), else an
    `avgpool` + linear `fc` pair when it has one; ValueError naming what is missing otherwise."""
    own = getattr(model, _ATTRIBUTE, None)
    if isinstance(own, Head):
        return own
    for cls in type(model).__mro__:
        found = _HEADS_BY_CLASS.get(cls) or _HEADS_BY_CLASS.get(f"{cls.__module__}.{cls.__qualname__}")
        if found is not None:
            return found if isinstance(found, Head) else found(model)
    if isinstance(getattr(model, "avgpool", None), nn.Module) and isinstance(getattr(model, "fc", None), nn.Linear):
        return Head(features="avgpool", classifier="fc", target_layer=_last_child_before(model, "avgpool"))
    raise ValueError(f"model: {type(model).__name__} has no known classifier head (no registered family, no "
                     f"avgpool + linear fc); give it one with nc_viz.models.set_head(model, Head(...))")


def _last_child_before(model: nn.Module, name: str) -> str:
    """The direct child registered just before `name` (the last stage, for a plain GAP head)."""
    previous = ""
    for child, _ in model.named_children():
        if child == name:
            break
        previous = child
    return previous or name


def classifier_of(model: nn.Module) -> nn.Linear:
    """The linear classifier of `model`'s head."""
    head = head_of(model)
    module = _submodule(model, head.classifier, "classifier")
    if not isinstance(module, nn.Linear):
        raise ValueError(f"model: the classifier {head.classifier!r} of {type(model).__name__} is a "
                         f"{type(module).__name__}, not an nn.Linear")
    return module


def target_layer(model: nn.Module) -> nn.Module:
    """The layer a gradient-based CAM (grad-cam's `target_layers`) hooks: the last stage."""
    return _submodule(model, head_of(model).target_layer, "target layer")


def _submodule(model: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise ValueError(f"model: {type(model).__name__} has no {what} module {name!r}") from exc


class FeatureRecorder:
    """Holds the feature map F seen in the last forward pass (`features`, or None)."""

    def __init__(self, activation: str | None) -> None:
        self.features: torch.Tensor | None = None
        self._activation = ACTIVATIONS[activation] if activation else None

    def record(self, tensor: torch.Tensor) -> None:
        self.features = self._activation(tensor) if self._activation is not None else tensor


@contextlib.contextmanager
def features_hook(model: nn.Module) -> Iterator[FeatureRecorder]:
    """Record F (the feature map the head pools) during the forward passes inside the block."""
    head = head_of(model)
    module = _submodule(model, head.features, "feature")
    recorder = FeatureRecorder(head.activation)
    if head.take == "input":
        handle = module.register_forward_pre_hook(lambda _m, args: recorder.record(args[0]))
    else:
        handle = module.register_forward_hook(lambda _m, _args, out: recorder.record(out))
    try:
        yield recorder
    finally:
        handle.remove()


def contract_from_forward(model: nn.Module, features: torch.Tensor | None, logits: torch.Tensor) -> Contract:
    """Check `logits == classifier(mean_xy F)` on one forward pass's own F and logits (cached per
    model: the first pass decides). The tolerance scales with the logits' magnitude."""
    known = _CONTRACTS.get(model)
    if known is not None:
        return known
    contract = _judge(model, features, logits)
    if contract is None:  # nothing finite to compare (NaN weights): judged on a later pass
        return Contract(True)
    _CONTRACTS[model] = contract
    return contract


def _judge(model: nn.Module, features: torch.Tensor | None, logits: torch.Tensor) -> Contract | None:
    name = type(model).__name__
    if features is None or features.dim() != 4:
        shape = "nothing" if features is None else f"a {features.dim()}-D tensor"
        return Contract(False, f"{name}: the head's feature module saw {shape}, not a 4-D feature map")
    try:
        fc = classifier_of(model)
    except ValueError as exc:
        return Contract(False, str(exc).removeprefix("model: "))
    channels = features.shape[1]
    if fc.in_features != channels or logits.dim() != 2 or logits.shape[1] != fc.out_features:
        return Contract(False, f"{name}: the classifier takes {fc.in_features} features but the pooled map has "
                               f"{channels} channels: a hidden layer sits between them")
    pooled = features.detach().float().mean(dim=(2, 3))
    predicted = F.linear(pooled, fc.weight.detach().float(), None if fc.bias is None else fc.bias.detach().float())
    actual = logits.detach().float()
    finite = torch.isfinite(actual) & torch.isfinite(predicted)
    if not bool(finite.any()):
        return None
    predicted, actual = predicted[finite], actual[finite]
    scale = float(actual.abs().max()) + float(predicted.abs().max()) + 1.0
    error = float((predicted - actual).abs().max())
    if not error <= 1e-3 * scale:
        return Contract(False, f"{name}: its logits are not the classifier applied to the average-pooled features "
                               f"(max difference {error:.3g}): a hidden layer or a norm sits in its head")
    return Contract(True)


def check_cam_contract(model: nn.Module, input_size: int) -> Contract:
    """Run one small input through `model` (eval mode, no grad) and judge the CAM contract."""
    known = _CONTRACTS.get(model)
    if known is not None:
        return known
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, input_size, input_size, generator=generator).to(device=device, dtype=dtype)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), features_hook(model) as hook:
            logits = model(x)
    except ValueError as exc:
        return Contract(False, str(exc).removeprefix("model: "))
    finally:
        model.train(was_training)
    return contract_from_forward(model, hook.features, logits)
