"""DenseNet 121, 161, 169, 201 (torchvision, Huang et al. 2017) and their `_nc` variants.

Head: `forward` applies ReLU to the output of `features` and average-pools it (no pool module),
so F = relu(features(x)) and the classifier is the linear `classifier`.

NC stages: the input of the first three dense blocks, `features.denseblock1..3`, maps of 56, 28
and 14 px at 224 px (the stem reduces by 4 before block 1, each transition by 2), as the other
families' 56/28/14 stages. `denseblock4` sees 7 x 7 at 224 px and 2 x 2 at 64 px, a map an NC
block of reduction 8 cannot encode (A // alpha = 0), so it gets none.

Preprocessing: torchvision's IMAGENET1K_V1 weights (224 crop of a 256 resize, bilinear).
"""
from __future__ import annotations

import re

from .head import Head, register_head
from .registry import Family, register_family
from .torchvision_family import Weights, count_blocks, register_with_nc, torchvision_plain

__all__ = ["DENSENETS", "STAGES"]

FAMILY = "densenet"
STAGES = ("features.denseblock1", "features.denseblock2", "features.denseblock3")
# name -> dense layers per block (torchvision's block_config)
DENSENETS = {
    "densenet121": (6, 12, 24, 16),
    "densenet161": (6, 12, 36, 24),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}
WEIGHTS = Weights("IMAGENET1K_V1", 224, 256)  # every DenseNet's
_LAYER_KEY = re.compile(r"^features\.denseblock(\d+)\.denselayer(\d+)\.")


def _recognises(keys: frozenset[str]) -> bool:
    """A torchvision DenseNet key set: dense layers in dense blocks and a `classifier`."""
    return "classifier.weight" in keys and "features.conv0.weight" in keys and any(
        k.startswith("features.denseblock1.denselayer1.") for k in keys)


def _block_counts(keys: frozenset[str]) -> tuple[int, ...]:
    return count_blocks(keys, _LAYER_KEY)


def _register_all() -> None:
    register_family(Family(FAMILY, _recognises, "torchvision DenseNet 121-201", block_counts=_block_counts))
    register_head("torchvision.models.densenet.DenseNet",
                  Head(features="features", take="output", activation="relu", classifier="classifier",
                       target_layer="features"))
    for name, counts in DENSENETS.items():
        register_with_nc(name, FAMILY, STAGES, torchvision_plain(name), WEIGHTS, block_counts=counts)


_register_all()
