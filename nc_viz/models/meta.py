"""What a loaded model carries: `ModelMeta` (everything needed to rebuild and feed it, saved with
every own checkpoint) and `LoadedModel` (the model in eval mode with its metadata)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..core.constants import IMAGENET_MEAN, IMAGENET_STD
from .preprocessing import Preprocess

__all__ = ["ModelMeta", "LoadedModel"]


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild a model and feed it: saved with every own checkpoint."""

    arch: str
    num_classes: int
    class_names: tuple[str, ...] | None = None
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    reduction: int | None = None
    placement: str | None = None
    stem_stride: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing the model was trained with."""
        return Preprocess(self.input_size, tuple(self.mean), tuple(self.std), self.crop_pct)

    def class_name(self, index: int) -> str:
        """Readable name of class `index` (the index itself when there are no names)."""
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so that `weights_only=True` can read it back."""
        d = asdict(self)
        d["class_names"] = list(self.class_names) if self.class_names else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelMeta":
        """Inverse of `to_dict`; unknown keys go to `extra`."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        if kwargs.get("class_names") is not None:
            kwargs["class_names"] = tuple(str(c) for c in kwargs["class_names"])
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs, extra=extra)


@dataclass
class LoadedModel:
    """A model in eval mode on its device, with the metadata it was loaded with."""

    model: nn.Module
    meta: ModelMeta
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device
