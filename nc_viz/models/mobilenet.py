"""MobileNetV2 (torchvision, Sandler et al. 2018) and `mobilenet_v2_nc`.

Head: `forward` average-pools the output of `features` (no pool module); the classifier is
`Dropout -> Linear`, so the linear classifier is `classifier.1`.

NC stages: `features` is a flat list of inverted-residual blocks; a stage is a run of blocks with
one output width (the paper's table 2). NC blocks sit at the input of the stages where the
resolution drops and the input is at most 56 x 56 at 224 px: `features.4` (56 px, 24 channels),
`features.7` (28 px, 32 channels), `features.14` (14 px, 96 channels). The first strided stage,
`features.2`, sees 112 x 112 (an NC block there would hold ~79M parameters) and gets none.

Preprocessing: torchvision's DEFAULT weights (IMAGENET1K_V2: 224 crop of a 232 resize).
"""
from __future__ import annotations

from .head import Head, register_head
from .registry import Family, register_family
from .torchvision_family import Weights, register_with_nc, torchvision_plain

__all__ = ["STAGES"]

FAMILY = "mobilenet_v2"
STAGES = ("features.4", "features.7", "features.14")
WEIGHTS = Weights("IMAGENET1K_V2", 224, 232)


def _recognises(keys: frozenset[str]) -> bool:
    """MobileNetV2 keys: inverted residuals `features.N.conv.*` and a `classifier.1` linear layer
    (EfficientNet's blocks are `features.N.M.block.*`)."""
    return "classifier.1.weight" in keys and "features.1.conv.0.0.weight" in keys


def _register_all() -> None:
    register_family(Family(FAMILY, _recognises, "torchvision MobileNetV2"))
    register_head("torchvision.models.mobilenetv2.MobileNetV2",
                  Head(features="features", take="output", classifier="classifier.1", target_layer="features"))
    register_with_nc("mobilenet_v2", FAMILY, STAGES, torchvision_plain("mobilenet_v2"), WEIGHTS)


_register_all()
