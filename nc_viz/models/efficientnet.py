"""EfficientNet b0-b7 and EfficientNetV2 s/m/l (torchvision, Tan & Le 2019, 2021) and their
`_nc` variants.

Head: `avgpool` pools the output of `features` (its input is F); the classifier is
`Dropout -> Linear`, so the linear classifier is `classifier.1`.

Preprocessing: each model's torchvision DEFAULT weights (crop, resize and mean/std from the
weight enum): b0 224, b1 240, b2 288, b3 300, b4 380, b5 456, b6 528, b7 600, v2-s 384, v2-m and
v2-l 480 px. (The enums ask for bicubic resizing for most of them; ncviz resizes bilinearly: the
interpolation is recorded in the spec's details only.)

NC stages: `features.1 ..` are the stages (MBConv / Fused-MBConv runs of one width); NC blocks
sit at the input of the stages that halve the resolution, where that input is at most 75 x 75
at the model's own default size (A = 5,625 positions: an NC block holds about 4 A^2 / alpha
parameters, 15.8M at alpha 8; 4.9M at 56 x 56). A bound of 56 x 56 would leave b5-b7 one block.
Input map sizes at the default size:

    b0 224: features.3 56, features.4 28, features.6 14     b4 380: features.4 48, features.6 24
    b1 240: features.3 60, features.4 30, features.6 15     b5 456: features.4 57, features.6 29
    b2 288: features.3 72, features.4 36, features.6 18     b6 528: features.4 66, features.6 33
    b3 300: features.3 75, features.4 38, features.6 19     b7 600: features.4 75, features.6 38
    v2-s 384: features.4 48, features.6 24                  v2-m/l 480: features.4 60, features.6 30

(`features.2` sees half the input side, 112 x 112 at 224 px: an NC block of ~79M parameters;
b4-b7 and v2 skip `features.3` too, 95-150 px at their sizes.)
"""
from __future__ import annotations

import re

from .head import Head, register_head
from .registry import Family, register_family
from .torchvision_family import Weights, count_blocks, register_with_nc, torchvision_plain

__all__ = ["EFFICIENTNETS"]

FAMILY = "efficientnet"
_THREE = ("features.3", "features.4", "features.6")
_TWO = ("features.4", "features.6")
# name -> (NC stages, blocks per stage features.1..N, as torchvision builds them)
EFFICIENTNETS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "efficientnet_b0": (_THREE, (1, 2, 2, 3, 3, 4, 1)),
    "efficientnet_b1": (_THREE, (2, 3, 3, 4, 4, 5, 2)),
    "efficientnet_b2": (_THREE, (2, 3, 3, 4, 4, 5, 2)),
    "efficientnet_b3": (_THREE, (2, 3, 3, 5, 5, 6, 2)),
    "efficientnet_b4": (_TWO, (2, 4, 4, 6, 6, 8, 2)),
    "efficientnet_b5": (_TWO, (3, 5, 5, 7, 7, 9, 3)),
    "efficientnet_b6": (_TWO, (3, 6, 6, 8, 8, 11, 3)),
    "efficientnet_b7": (_TWO, (4, 7, 7, 10, 10, 13, 4)),
    "efficientnet_v2_s": (_TWO, (2, 4, 4, 6, 9, 15)),
    "efficientnet_v2_m": (_TWO, (3, 5, 5, 7, 14, 18, 5)),
    "efficientnet_v2_l": (_TWO, (4, 7, 7, 10, 19, 25, 7)),
}
# name -> torchvision's DEFAULT weights' preprocessing (the enum's transforms)
WEIGHTS: dict[str, Weights] = {
    "efficientnet_b0": Weights("IMAGENET1K_V1", 224, 256, "bicubic"),
    "efficientnet_b1": Weights("IMAGENET1K_V2", 240, 255),
    "efficientnet_b2": Weights("IMAGENET1K_V1", 288, 288, "bicubic"),
    "efficientnet_b3": Weights("IMAGENET1K_V1", 300, 320, "bicubic"),
    "efficientnet_b4": Weights("IMAGENET1K_V1", 380, 384, "bicubic"),
    "efficientnet_b5": Weights("IMAGENET1K_V1", 456, 456, "bicubic"),
    "efficientnet_b6": Weights("IMAGENET1K_V1", 528, 528, "bicubic"),
    "efficientnet_b7": Weights("IMAGENET1K_V1", 600, 600, "bicubic"),
    "efficientnet_v2_s": Weights("IMAGENET1K_V1", 384, 384),
    "efficientnet_v2_m": Weights("IMAGENET1K_V1", 480, 480),
    "efficientnet_v2_l": Weights("IMAGENET1K_V1", 480, 480, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
_BLOCK_KEY = re.compile(r"^features\.(\d+)\.(\d+)\.block\.")


def _recognises(keys: frozenset[str]) -> bool:
    """EfficientNet keys: stages of blocks `features.N.M.block.*` and a `classifier.1` linear layer
    (MobileNetV2's blocks are `features.N.conv.*`)."""
    return "classifier.1.weight" in keys and "features.1.0.block.0.0.weight" in keys


def _block_counts(keys: frozenset[str]) -> tuple[int, ...]:
    return count_blocks(keys, _BLOCK_KEY)


def _register_all() -> None:
    register_family(Family(FAMILY, _recognises, "torchvision EfficientNet b0-b7, v2 s/m/l",
                           block_counts=_block_counts))
    register_head("torchvision.models.efficientnet.EfficientNet",
                  Head(features="avgpool", classifier="classifier.1", target_layer="features"))
    for name, (stages, counts) in EFFICIENTNETS.items():
        register_with_nc(name, FAMILY, stages, torchvision_plain(name), WEIGHTS[name], block_counts=counts)


_register_all()
