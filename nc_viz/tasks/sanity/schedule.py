"""The randomisation schedule of `ncviz sanity` and the working copies it randomises.

A *layer* is a module with parameters (or buffers) of its own and a `reset_parameters()`,
taken in the order a forward pass first runs them. A *block* (`granularity="block"`) groups
the layers of one unit of the network: the shortest prefix of a layer's qualified name that is
an element of a container (`layer1.0` of `layer1.0.conv1`, `features.3` of MobileNet's
`features.3.conv.0.0`); a layer in no such element is its own block (a stem `conv1`, `bn1`);
every NC block (`layer1.cn`) is a block of its own, where it sits. The classifier is always
the first step.

Steps run from the classifier towards the input. The two models of a pair share one schedule:
their layers are matched by name, with the NC wrapper's `block` level left out
(`layer1.block.0.conv1` of the NC model is `layer1.0.conv1` of the baseline); a step that only
one model has (an NC block) leaves the other model as it was.

Randomised weights come from each layer's own `reset_parameters()`, run on a CPU copy of the
layer under `torch.random.fork_rng` with a seed of (the run's seed, the layer's matched name):
the same seed gives the same weights on any device, and both models get the same random
weights for the layers they share. The loaded models are never written to: a `Randomiser`
works on a deep copy.
"""
from __future__ import annotations

import copy
import logging
import zlib
from dataclasses import dataclass, field

import torch
from torch import nn

from ...core.errors import NcVizError, ParameterError
from ...core.roles import ROLES
from ...models.nc_block import NCBlock, NCWrapper

log = logging.getLogger(__name__)

__all__ = ["GRANULARITIES", "MODES", "Randomiser", "Step", "Unit", "build_schedule", "layer_seed",
           "model_units", "step_layers"]

GRANULARITIES = ("block", "layer")
MODES = ("cascading", "independent")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class Unit:
    """One randomisation unit of one model: its matched name, qualified layer names, NC or not."""

    name: str
    layers: tuple[str, ...]
    nc: bool


@dataclass(frozen=True)
class Step:
    """One step of the pair's schedule: its name, and the layers it randomises in each model
    (none in a model that lacks it)."""

    name: str
    nc: bool
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)   # role -> qualified names


def _own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]


def _run_order(model: nn.Module, input_size: int) -> list[str]:
    """Qualified names of the modules in the order one forward pass first runs them."""
    order: list[str] = []
    seen: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        def hook(_module: nn.Module, _args: tuple, name: str = name) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)
        handles.append(module.register_forward_pre_hook(hook))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return order


def _matched_name(model: nn.Module, name: str) -> str:
    """`name` with the NC wrapper's `block` level left out (the baseline's name of the layer)."""
    parts = name.split(".") if name else []
    kept = [part for k, part in enumerate(parts)
            if not (part == "block" and isinstance(model.get_submodule(".".join(parts[:k])), NCWrapper))]
    return ".".join(kept)


def _nc_owner(model: nn.Module, name: str) -> str | None:
    """The qualified name of the NC block `name` lies in (or is), None outside any."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if isinstance(model.get_submodule(prefix), NCBlock):
            return prefix
    return None


def _block_of(model: nn.Module, name: str) -> str:
    """The block of layer `name`: its shortest prefix that is a non-leaf element of a container."""
    parts = name.split(".")
    for end in range(1, len(parts)):
        parent = model.get_submodule(".".join(parts[:end - 1]))
        module = model.get_submodule(".".join(parts[:end]))
        if isinstance(parent, _CONTAINERS) and any(_own_tensors(m) for m in module.modules()) \
                and len(list(module.children())) > 0:
            return ".".join(parts[:end])
    return name


def model_units(model: nn.Module, input_size: int, granularity: str = "block") -> list[Unit]:
    """The randomisation units of `model`, from the classifier towards the input."""
    if granularity not in GRANULARITIES:
        raise ParameterError("granularity", f"{{param}} {granularity!r}: choose from {', '.join(GRANULARITIES)}")
    from ...cams.compute import classifier_of

    modules = dict(model.named_modules())
    classifier = next(n for n, m in modules.items() if m is classifier_of(model))
    run = _run_order(model, input_size)
    layers = [n for n in run if n and _own_tensors(modules[n]) and callable(getattr(modules[n], "reset_parameters", None))]
    skipped = [n for n in run if n and _own_tensors(modules[n]) and n not in layers]
    if skipped:
        log.warning("%d module(s) with weights but no reset_parameters() are never randomised: %s",
                    len(skipped), ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    units: dict[str, list[str]] = {}
    nc_units: set[str] = set()
    for name in layers:
        owner = _nc_owner(model, name)
        if name == classifier or granularity == "layer":
            key = name
        else:
            key = owner if owner is not None else _block_of(model, name)
        units.setdefault(key, []).append(name)
        if owner is not None:
            nc_units.add(key)
    ordered = [Unit(_matched_name(model, key), tuple(names), key in nc_units) for key, names in units.items()]
    ordered.reverse()
    head = [u for u in ordered if u.layers == (classifier,)]
    return head + [u for u in ordered if u.layers != (classifier,)]


def build_schedule(units: dict[str, list[Unit]]) -> list[Step]:
    """One schedule for both models (role -> its units): shared units matched by name in order,
    NC-only units where they sit. An NcVizError when the models' other units differ."""
    base, nc = units[ROLES[0]], units[ROLES[1]]
    plain = [[u.name for u in us if not u.nc] for us in (base, nc)]
    if plain[0] != plain[1]:
        first = next((i for i, (a, b) in enumerate(zip(*plain)) if a != b), min(map(len, plain)))
        names = [p[first] if first < len(p) else "(none)" for p in plain]
        raise NcVizError(f"the two models' layers differ (step {first + 1}: {names[0]} in the baseline, {names[1]} "
                         f"in the NC model): the randomisation test compares one network with and without NC blocks")
    steps: list[Step] = []
    i = j = 0
    while i < len(base) or j < len(nc):
        a = base[i] if i < len(base) else None
        b = nc[j] if j < len(nc) else None
        if a is not None and b is not None and a.name == b.name and a.nc == b.nc:
            steps.append(Step(a.name, a.nc, {ROLES[0]: a.layers, ROLES[1]: b.layers}))
            i, j = i + 1, j + 1
        elif a is not None and a.nc:
            steps.append(Step(a.name, True, {ROLES[0]: a.layers, ROLES[1]: ()}))
            i += 1
        else:
            assert b is not None and b.nc   # the non-NC units are equal in order
            steps.append(Step(b.name, True, {ROLES[0]: (), ROLES[1]: b.layers}))
            j += 1
    return steps


def step_layers(steps: list[Step], index: int, role: str, mode: str) -> frozenset[str]:
    """The layers of `role` randomised at step `index` (1-based; 0: none): every step up to it
    (`cascading`) or its own (`independent`)."""
    if mode not in MODES:
        raise ParameterError("mode", f"{{param}} {mode!r}: choose from {', '.join(MODES)}")
    if index == 0:
        return frozenset()
    chosen = steps[:index] if mode == "cascading" else [steps[index - 1]]
    return frozenset(name for step in chosen for name in step.layers[role])


def layer_seed(seed: int, name: str) -> int:
    """The seed of one layer's random weights: the run's seed and the layer's matched name."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2 ** 63)


class Randomiser:
    """A deep copy of one model whose layers are set, on demand, to random or trained weights.

    `apply(layers)` leaves exactly `layers` randomised: layers randomised before and not now
    get their trained tensors back (copied from the loaded model, which is only read).
    """

    def __init__(self, model: nn.Module, seed: int) -> None:
        self.original = model
        self.work = copy.deepcopy(model).eval()
        self.seed = seed
        self.names = {name: _matched_name(model, name) for name, _ in model.named_modules()}
        self.random: dict[str, dict[str, torch.Tensor]] = {}
        self.randomised: frozenset[str] = frozenset()

    def _random_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """Layer `name`'s own tensors after its `reset_parameters()` (seeded, on a CPU copy)."""
        if name not in self.random:
            module = copy.deepcopy(self.original.get_submodule(name)).to("cpu")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(layer_seed(self.seed, self.names[name]))
                module.reset_parameters()
            own = dict(_own_tensors(self.work.get_submodule(name)))
            self.random[name] = {key: value.detach().to(device=own[key].device, dtype=own[key].dtype)
                                 for key, value in _own_tensors(module)}
        return self.random[name]

    @torch.no_grad()
    def apply(self, layers: frozenset[str]) -> nn.Module:
        """The working copy with exactly `layers` randomised (the rest as trained)."""
        for name in self.randomised - layers:
            trained = dict(_own_tensors(self.original.get_submodule(name)))
            for key, tensor in _own_tensors(self.work.get_submodule(name)):
                tensor.copy_(trained[key])
        for name in layers - self.randomised:
            values = self._random_tensors(name)
            for key, tensor in _own_tensors(self.work.get_submodule(name)):
                tensor.copy_(values[key])
        self.randomised = frozenset(layers)
        return self.work
