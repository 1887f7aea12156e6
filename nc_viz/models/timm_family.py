"""timm models as `timm:NAME` (the optional extra `ncviz[timm]`; timm is imported on first use).

An `arch` of `timm:NAME` builds any timm model with `timm.create_model(NAME, pretrained=False,
num_classes=...)` (nothing is downloaded) and loads timm's own state-dict keys. The head comes
from timm's API: the classifier is `get_classifier()`, F is the input of the `global_pool` next
to it, and gradient methods hook the last stage before the pool. Whether CAM is exact is checked
numerically when a model is loaded (ConvNeXt has a norm in its head: gradient methods only).
Default preprocessing is the model's `pretrained_cfg` (read from timm's registry, no download).

A metadata-less state dict is recognised for the few timm families listed in `_CANDIDATES`
(deep-stem and SE ResNets, EfficientNet, ConvNeXt) by block counts, then exact key shapes;
other timm checkpoints need `arch` `timm:NAME`.
"""
from __future__ import annotations

import difflib
import importlib.util
import logging
import re
import sys
from functools import partial
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..core.constants import IMAGENET_MEAN, IMAGENET_STD
from ..core.errors import UsageError
from .head import Head, set_head
from .preprocessing import Preprocess
from .registry import ArchSpec, Builder, Family, register_family, register_resolver

__all__ = ["PREFIX", "timm_available", "timm_head", "timm_candidates", "CANDIDATE_BLOCKS"]

log = logging.getLogger(__name__)

PREFIX = "timm"
INSTALL_HINT = "pip install 'ncviz[timm]'"
_PASSIVE = (nn.Identity, nn.Dropout, nn.Flatten)

# Candidate names for a metadata-less state dict: blocks per stage, as the keys count them
# (`layerS.I.`, `blocks.S.I.`, `stages.S.blocks.I.`). The key shapes then decide; names whose
# weights have the same shapes (efficientnet_bN / tf_efficientnet_bN) are both listed, so that
# such a file is reported as ambiguous instead of being taken as one of them.
CANDIDATE_BLOCKS: dict[str, tuple[int, ...]] = {
    "resnet10t": (1, 1, 1, 1), "resnet14t": (1, 1, 1, 1), "resnet18d": (2, 2, 2, 2), "resnet26d": (2, 2, 2, 2),
    "resnet26t": (2, 2, 2, 2), "resnet34d": (3, 4, 6, 3), "resnet50d": (3, 4, 6, 3), "resnet50t": (3, 4, 6, 3),
    "resnet101d": (3, 4, 23, 3), "resnet152d": (3, 8, 36, 3), "resnet200d": (3, 24, 36, 3),
    "seresnet18": (2, 2, 2, 2), "seresnet34": (3, 4, 6, 3), "seresnet50": (3, 4, 6, 3),
    "seresnet101": (3, 4, 23, 3), "seresnet152": (3, 8, 36, 3), "seresnext26d_32x4d": (2, 2, 2, 2),
    "seresnext26t_32x4d": (2, 2, 2, 2), "seresnext50_32x4d": (3, 4, 6, 3), "seresnext101_32x4d": (3, 4, 23, 3),
    "efficientnet_b0": (1, 2, 2, 3, 3, 4, 1), "efficientnet_b1": (2, 3, 3, 4, 4, 5, 2),
    "efficientnet_b2": (2, 3, 3, 4, 4, 5, 2), "efficientnet_b3": (2, 3, 3, 5, 5, 6, 2),
    "tf_efficientnet_b0": (1, 2, 2, 3, 3, 4, 1), "tf_efficientnet_b1": (2, 3, 3, 4, 4, 5, 2),
    "tf_efficientnet_b2": (2, 3, 3, 4, 4, 5, 2), "tf_efficientnet_b3": (2, 3, 3, 5, 5, 6, 2),
    "convnext_atto": (2, 2, 6, 2), "convnext_femto": (2, 2, 6, 2), "convnext_pico": (2, 2, 6, 2),
    "convnext_nano": (2, 2, 8, 2), "convnext_tiny": (3, 3, 9, 3), "convnext_small": (3, 3, 27, 3),
    "convnext_base": (3, 3, 27, 3),
}
_BLOCK_KEY = re.compile(r"^(layer\d+|blocks\.\d+|stages\.\d+\.blocks)\.(\d+)\.")


# ----------------------------------------------------------------------------- importing timm


def timm_available() -> bool:
    """Whether timm can be imported (without importing it)."""
    if PREFIX in sys.modules:
        return sys.modules[PREFIX] is not None
    return importlib.util.find_spec(PREFIX) is not None


def _timm(name: str) -> ModuleType:
    """The timm module; a one-line UsageError saying how to install it when it is missing."""
    try:
        import timm
    except ImportError:
        raise UsageError(f"{PREFIX}:{name} needs the timm package, which is not installed: {INSTALL_HINT}") from None
    return timm


# ----------------------------------------------------------------------------- heads


def timm_head(model: nn.Module) -> Head:
    """The Head of a timm classifier: `get_classifier()`, the `global_pool` beside it (F is its
    input), and the last non-trivial top-level module before the pool as the grad-cam layer."""
    modules = dict(model.named_modules())
    classifier = _classifier_name(model, modules)
    parent = classifier.rpartition(".")[0]
    pools = [n for n in modules if n.rpartition(".")[2] == "global_pool"]
    near = [n for n in pools if n.rpartition(".")[0] == parent]
    features = (near or pools or [classifier])[-1]
    return Head(features=features, classifier=classifier, target_layer=_target_layer(model, features))


def _classifier_name(model: nn.Module, modules: dict[str, nn.Module]) -> str:
    found = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(found, (tuple, list)):  # distilled models: (head, head_dist)
        found = found[0] if found else None
    for name, module in modules.items():
        if name and module is found:
            return name
    cfg_name = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if isinstance(cfg_name, str) and cfg_name in modules:
        return cfg_name
    raise ValueError(f"model: {type(model).__name__} has no classifier that timm's get_classifier() names")


def _target_layer(model: nn.Module, features: str) -> str:
    """The last top-level module before the one holding the pooled features (Identity, Dropout
    and Flatten skipped): layer4 for ResNets, bn2 for EfficientNet, stages for ConvNeXt."""
    top = features.partition(".")[0]
    chosen = ""
    for name, child in model.named_children():
        if name == top:
            break
        if not isinstance(child, _PASSIVE):
            chosen = name
    if chosen:
        return chosen
    info = getattr(model, "feature_info", None)
    last = info[-1].get("module") if isinstance(info, list) and info and isinstance(info[-1], dict) else None
    return last if isinstance(last, str) else features


def _plain_head(model: nn.Module, head: Head) -> bool:
    """A structural guess at the CAM contract (the numerical check on loading decides): the pool
    is an average pool and only Identity/Dropout/Flatten sit between it and the classifier."""
    pool = model.get_submodule(head.features)
    if head.features == head.classifier or getattr(pool, "pool_type", "avg") != "avg":
        return False
    parent, _, pool_name = head.features.rpartition(".")
    if parent != head.classifier.rpartition(".")[0]:
        return False
    container = model.get_submodule(parent) if parent else model
    between, started = [], False
    for name, child in container.named_children():
        if name == pool_name:
            started = True
        elif name == head.classifier.rpartition(".")[2]:
            break
        elif started:
            between.append(child)
    return all(isinstance(m, _PASSIVE) for m in between)


# ----------------------------------------------------------------------------- resolving names


def _resolve(name: str) -> tuple[ArchSpec, Builder]:
    """`timm:NAME` -> (spec, builder); NAME may carry a pretrained tag (`resnet50d.a1_in1k`)."""
    if not name or ":" in name or "/" in name:
        raise ValueError(f"{PREFIX}:{name}: give a timm model name (hub names are not loaded: nothing is downloaded)")
    timm = _timm(name)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {' or '.join(f'{PREFIX}:{c}' for c in close)}?)" if close else ""
        raise ValueError(f"unknown timm model {name!r}{hint}")
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=2)
        head = timm_head(model)
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError) as exc:
        raise ValueError(f"{PREFIX}:{name}: timm cannot build it as a classifier ({exc})") from exc
    cfg = _pretrained_cfg(timm, name, model)
    size = cfg.get("input_size") or (3, 224, 224)
    info = getattr(model, "feature_info", None) or []
    stages = tuple(i["module"] for i in info if isinstance(i, dict) and isinstance(i.get("module"), str))
    spec = ArchSpec(name=f"{PREFIX}:{name}", base=f"{PREFIX}:{name}", family=PREFIX, nc=False,
                    preprocess=Preprocess(int(size[-1]), _triple(cfg.get("mean"), IMAGENET_MEAN),
                                          _triple(cfg.get("std"), IMAGENET_STD), float(cfg.get("crop_pct") or 0.875)),
                    stages=stages, cam_exact=_plain_head(model, head),
                    details=(("timm_version", str(getattr(timm, "__version__", "?"))),
                             ("interpolation", str(cfg.get("interpolation") or "")),
                             ("head", (head.features, head.classifier, head.target_layer))))
    if size[-1] != size[-2]:
        log.warning("%s:%s: timm's input size is %s; ncviz feeds square inputs of %d px", PREFIX, name,
                    tuple(size), spec.default_input_size)
    return spec, partial(_build, name)


def _pretrained_cfg(timm: ModuleType, name: str, model: nn.Module) -> dict[str, Any]:
    """The default pretrained config of `name` from timm's registry (no download)."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError, KeyError):
        cfg = None
    if cfg is not None and hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    return dict(getattr(model, "pretrained_cfg", None) or {})


def _triple(value: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return (float(value[0]), float(value[1]), float(value[2]))
    return default


def _build(name: str, num_classes: int, **_ignored: Any) -> nn.Module:
    """A freshly initialised timm model with its Head set (NC options do not apply).

    On the meta device (checkpoint loading), a model with non-persistent buffers (Swin's
    attention masks, ...) is built on the CPU instead: no checkpoint key would fill them."""
    timm = _timm(name)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    if _on_meta(model) and any(m._non_persistent_buffers_set for m in model.modules()):
        with torch.device("cpu"):
            model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    return set_head(model, timm_head(model))


def _on_meta(model: nn.Module) -> bool:
    param = next(model.parameters(), None)
    return param is not None and param.is_meta


# ----------------------------------------------------------------------------- key recognition


def _block_counts(keys: frozenset[str]) -> tuple[int, ...]:
    blocks: dict[str, set[int]] = {}
    for key in keys:
        m = _BLOCK_KEY.match(key)
        if m:
            blocks.setdefault(m.group(1), set()).add(int(m.group(2)))
    order = sorted(blocks, key=lambda s: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)])
    return tuple(len(blocks[s]) for s in order)


def _recognises(keys: frozenset[str]) -> bool:
    """Cheap: a key pattern of a candidate family, and timm installed (not imported here)."""
    deep_stem = "conv1.0.weight" in keys and "fc.weight" in keys
    se_resnet = "fc.weight" in keys and any(".se.fc1.weight" in k for k in keys)
    efficientnet = {"conv_stem.weight", "conv_head.weight", "classifier.weight"} <= keys
    convnext = {"stem.0.weight", "head.norm.weight", "head.fc.weight"} <= keys
    return (deep_stem or se_resnet or efficientnet or convnext) and timm_available()


def timm_candidates(keys: frozenset[str]) -> tuple[str, ...]:
    """`timm:NAME`s from `CANDIDATE_BLOCKS` whose blocks per stage match the keys'."""
    counts = _block_counts(keys)
    names = [n for n, blocks in CANDIDATE_BLOCKS.items() if blocks == counts]
    if names:
        timm = _timm(names[0])
        names = [n for n in names if timm.is_model(n)]
    return tuple(f"{PREFIX}:{n}" for n in names)


register_family(Family(PREFIX, _recognises, "timm models (arch timm:NAME; pip install 'ncviz[timm]')",
                       candidates=timm_candidates))
register_resolver(PREFIX, _resolve)
