"""RegNet X and Y, every size torchvision has (400MF ... 32GF, Y also 128GF; Radosavovic et al.
2020), and their `_nc` variants.

Head: `avgpool` pools the output of `trunk_output` (its input is F) into the linear `fc`.

NC stages: `trunk_output.block2`, `block3`, `block4`, whose inputs are 56, 28 and 14 px at
224 px. Every RegNet stage starts with a stride-2 block and the stem has stride 2, so the first
stage, `trunk_output.block1`, sees 112 x 112 (an NC block there would hold ~79M parameters) and
gets none. regnet_y_128gf_nc has no block at `block4`: its 2,904 channels cannot be split into
the NC layer's equal groups of about 512 (5 groups; `nc_block`), so it gets `block2` and `block3`.

Preprocessing: torchvision's DEFAULT weights (IMAGENET1K_V2: 224 crop of a 232 resize); for
regnet_y_128gf, whose DEFAULT weights are fine-tuned at 384 px, the 224-px ImageNet-1k weights
(IMAGENET1K_SWAG_LINEAR_V1), so that every RegNet shares the 224-px NC stages above.

torchvision computes a RegNet's widths with torch tensors (`BlockParams.from_init_params`),
which fails on the meta device; the parameters are computed here, on the CPU, from the init
values torchvision's builders use, when a network is first built (torchvision is imported then,
not at registration: the blocks per stage are kept in `DEPTHS`, which the tests compare with
`regnet_params`).
"""
from __future__ import annotations

import re
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .head import Head, register_head
from .registry import Family, register_family
from .torchvision_family import Weights, check_positive, count_blocks, register_with_nc

if TYPE_CHECKING:
    from torchvision.models.regnet import BlockParams

__all__ = ["REGNETS", "STAGES", "DEPTHS", "WEIGHTS", "regnet_params"]

FAMILY = "regnet"
STAGES = ("trunk_output.block2", "trunk_output.block3", "trunk_output.block4")
# name -> BlockParams.from_init_params arguments, as in torchvision.models.regnet's builders
REGNETS: dict[str, dict[str, float]] = {
    "regnet_x_400mf": dict(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16),
    "regnet_x_800mf": dict(depth=16, w_0=56, w_a=35.73, w_m=2.28, group_width=16),
    "regnet_x_1_6gf": dict(depth=18, w_0=80, w_a=34.01, w_m=2.25, group_width=24),
    "regnet_x_3_2gf": dict(depth=25, w_0=88, w_a=26.31, w_m=2.25, group_width=48),
    "regnet_x_8gf": dict(depth=23, w_0=80, w_a=49.56, w_m=2.88, group_width=120),
    "regnet_x_16gf": dict(depth=22, w_0=216, w_a=55.59, w_m=2.1, group_width=128),
    "regnet_x_32gf": dict(depth=23, w_0=320, w_a=69.86, w_m=2.0, group_width=168),
    "regnet_y_400mf": dict(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25),
    "regnet_y_800mf": dict(depth=14, w_0=56, w_a=38.84, w_m=2.4, group_width=16, se_ratio=0.25),
    "regnet_y_1_6gf": dict(depth=27, w_0=48, w_a=20.71, w_m=2.65, group_width=24, se_ratio=0.25),
    "regnet_y_3_2gf": dict(depth=21, w_0=80, w_a=42.63, w_m=2.66, group_width=24, se_ratio=0.25),
    "regnet_y_8gf": dict(depth=17, w_0=192, w_a=76.82, w_m=2.19, group_width=56, se_ratio=0.25),
    "regnet_y_16gf": dict(depth=18, w_0=200, w_a=106.23, w_m=2.48, group_width=112, se_ratio=0.25),
    "regnet_y_32gf": dict(depth=20, w_0=232, w_a=115.89, w_m=2.53, group_width=232, se_ratio=0.25),
    "regnet_y_128gf": dict(depth=27, w_0=456, w_a=160.83, w_m=2.52, group_width=264, se_ratio=0.25),
}
# name -> blocks per stage (`BlockParams.depths` of REGNETS[name])
DEPTHS: dict[str, tuple[int, ...]] = {
    "regnet_x_400mf": (1, 2, 7, 12), "regnet_x_800mf": (1, 3, 7, 5), "regnet_x_1_6gf": (2, 4, 10, 2),
    "regnet_x_3_2gf": (2, 6, 15, 2), "regnet_x_8gf": (2, 5, 15, 1), "regnet_x_16gf": (2, 6, 13, 1),
    "regnet_x_32gf": (2, 7, 13, 1), "regnet_y_400mf": (1, 3, 6, 6), "regnet_y_800mf": (1, 3, 8, 2),
    "regnet_y_1_6gf": (2, 6, 17, 2), "regnet_y_3_2gf": (2, 5, 13, 1), "regnet_y_8gf": (2, 4, 10, 1),
    "regnet_y_16gf": (2, 4, 11, 1), "regnet_y_32gf": (2, 5, 12, 1), "regnet_y_128gf": (2, 7, 17, 1),
}
WEIGHTS = Weights("IMAGENET1K_V2", 224, 232)  # torchvision's DEFAULT for every RegNet but:
_WEIGHTS = {"regnet_y_128gf": Weights("IMAGENET1K_SWAG_LINEAR_V1", 224, 224, "bicubic")}
_STAGES = {"regnet_y_128gf": STAGES[:2]}
_BLOCK_KEY = re.compile(r"^trunk_output\.block(\d+)\.block\d+-(\d+)\.")


@lru_cache(maxsize=None)
def regnet_params(name: str) -> "BlockParams":
    """The per-stage depths, widths, groups and strides of `name`, computed on the CPU."""
    from torchvision.models.regnet import BlockParams

    with torch.device("cpu"):
        return BlockParams.from_init_params(**REGNETS[name])


def _plain(name: str) -> Callable[..., nn.Module]:
    def plain(num_classes: int, stem_stride: int = 1) -> nn.Module:
        from torchvision.models.regnet import RegNet

        check_positive("num_classes", num_classes)
        return RegNet(regnet_params(name), num_classes=num_classes,
                      norm_layer=partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1))
    return plain


def _recognises(keys: frozenset[str]) -> bool:
    """RegNet keys: a `stem`, stages `trunk_output.blockS.blockS-I.*` and a linear `fc`."""
    return "stem.0.weight" in keys and "fc.weight" in keys and any(
        k.startswith("trunk_output.block1.block1-0.") for k in keys)


def _block_counts(keys: frozenset[str]) -> tuple[int, ...]:
    return count_blocks(keys, _BLOCK_KEY)


def _register_all() -> None:
    register_family(Family(FAMILY, _recognises, "torchvision RegNet X and Y", block_counts=_block_counts))
    register_head("torchvision.models.regnet.RegNet",
                  Head(features="avgpool", classifier="fc", target_layer="trunk_output"))
    for name in REGNETS:
        register_with_nc(name, FAMILY, _STAGES.get(name, STAGES), _plain(name), _WEIGHTS.get(name, WEIGHTS),
                         DEPTHS[name])


_register_all()
