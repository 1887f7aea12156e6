"""What a loaded model carries: `ModelMeta` (everything needed to rebuild and feed it, saved with
every own checkpoint) and `LoadedModel` (the model in eval mode with its metadata)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .preprocessing import Preprocess

__all__ = ["ModelMeta", "LoadedModel", "PREPROCESS_KEYS"]


PREPROCESS_KEYS = ("input_size", "mean", "std", "crop_pct")
"""The keys under which a checkpoint's metadata stores its `Preprocess` (`center_crop` is not
stored: a checkpoint's preprocessing always centre-crops)."""


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild a model and feed it: saved with every own checkpoint."""

    arch: str
    num_classes: int
    class_names: tuple[str, ...] | None = None
    preprocess: Preprocess = Preprocess()
    reduction: int | None = None
    placement: str | None = None
    stem_stride: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        """The input side the model is built for: its preprocessing's `input_size`."""
        return self.preprocess.input_size

    def class_name(self, index: int) -> str:
        """Readable name of class `index` (the index itself when there are no names)."""
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so that `weights_only=True` can read it back; the preprocessing is
        stored flat, under PREPROCESS_KEYS."""
        p = self.preprocess
        return {"arch": self.arch, "num_classes": self.num_classes,
                "class_names": list(self.class_names) if self.class_names else None,
                "input_size": p.input_size, "mean": list(p.mean), "std": list(p.std), "crop_pct": p.crop_pct,
                "reduction": self.reduction, "placement": self.placement, "stem_stride": self.stem_stride,
                "extra": copy.deepcopy(self.extra)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelMeta":
        """Inverse of `to_dict`; unknown keys go to `extra`."""
        known = {f for f in cls.__dataclass_fields__ if f != "preprocess"}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in d.items() if k not in known and k not in PREPROCESS_KEYS})
        if kwargs.get("class_names") is not None:
            kwargs["class_names"] = tuple(str(c) for c in kwargs["class_names"])
        stored = {k: d[k] for k in PREPROCESS_KEYS if k in d}
        for key in ("mean", "std"):
            if key in stored:
                stored[key] = tuple(float(v) for v in stored[key])
        return cls(**kwargs, preprocess=Preprocess(**stored), extra=extra)


@dataclass
class LoadedModel:
    """A model in eval mode on its device, with the metadata it was loaded with."""

    model: nn.Module
    meta: ModelMeta
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def summary(self) -> str:
        """One line: architecture, NC settings, classes, parameters, device and file."""
        meta = self.meta
        nc = f" (reduction {meta.reduction}, placement {meta.placement})" if meta.reduction is not None else ""
        params = sum(p.numel() for p in self.model.parameters())
        device = next((str(p.device) for p in self.model.parameters()), "no parameters")
        source = f", {self.path}" if self.path is not None else ""
        return (f"{meta.arch}{nc}, {meta.num_classes} classes, {params:,} parameters, {meta.input_size} px, "
                f"{device}{source}")

    def __repr__(self) -> str:
        return f"LoadedModel({self.summary()})"
