"""`ncviz evaluate`: accuracy, localisation and neuron diversity of both models (DESIGN 2.3).

Maps are the CAM of the ground-truth class (what a localisation score asks about), on the
images of a data set written by `ncviz make-data`, masks resized exactly as the images are.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .api import ModelPair, default_batch_size
from .cam import FeatureHook, classifier_of, compute_cams
from .data import Preprocess, load_image
from .errors import NcVizError
from .metrics import energy_in_masks, instance_coverage, neuron_map_diversity, pointing_game, published_corr
from .synth import Record, read_dataset, read_masks

log = logging.getLogger(__name__)

ROLES = ("baseline", "nc")


@dataclass
class ModelScores:
    """Per-image scores of one model, summarised by `summary()`."""

    correct: list[bool] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    pointing: list[bool] = field(default_factory=list)
    coverage_multi: list[float] = field(default_factory=list)
    correlation: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    published_corr: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "accuracy": _mean(self.correct),
            "energy_in_masks": _mean(self.energy),
            "pointing_game": _mean(self.pointing),
            "instance_coverage_multi": _mean(self.coverage_multi),
            "topk_mean_pairwise_corr": _mean(self.correlation),
            "topk_mean_pairwise_iou": _mean(self.iou),
            "published_corr": _mean(self.published_corr),
        }


def _mean(values: Sequence[float | bool]) -> float:
    finite = [float(v) for v in values if not (isinstance(v, float) and math.isnan(v))]
    return round(sum(finite) / len(finite), 4) if finite else float("nan")


def _masks_as_seen(record: Record, preprocess: Preprocess) -> torch.Tensor:
    """Instance masks resized and cropped exactly like the image (nearest neighbour)."""
    from torchvision.transforms.v2 import functional as TF

    masks = read_masks(record)
    out = []
    for m in masks:
        img = Image.fromarray(m.astype(np.uint8) * 255)
        img = preprocess.geometry(img, TF.InterpolationMode.NEAREST)
        out.append(np.asarray(img) > 127)
    return torch.from_numpy(np.stack(out))


def _class_count(data_dir: Path, records: Sequence[Record]) -> int:
    """Classes of a data set: the lines of classes.txt, else the largest label + 1."""
    try:
        names = [line for line in (data_dir / "classes.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        names = []
    return len(names) or max((r.label for r in records), default=-1) + 1


def check_labels(pair: ModelPair, records: Sequence[Record], data_dir: Path) -> None:
    """The data's labels must be the models' classes: same range, and same names where known
    (the rule of `datasets.check_classes`, on the records of a synthetic data set)."""
    from .datasets import Dataset, Sample, check_classes

    meta = pair.baseline.meta
    names: dict[int, str] = {}
    for record in records:
        if names.setdefault(record.label, record.class_name) != record.class_name:
            raise NcVizError(f"{data_dir}: class {record.label} is both {names[record.label]!r} and "
                             f"{record.class_name!r} in labels.csv")
    dataset = Dataset("ncviz", data_dir, [Sample(str(r.image_path), r.image_path, r.label) for r in records],
                      class_names=[names.get(i, "") for i in range(max(names, default=-1) + 1)],
                      num_classes=_class_count(data_dir, records))
    check_classes(dataset, meta.num_classes, meta.class_names or None)


def evaluate_pair(pair: ModelPair, data_dir: Path, top_k: int = 8, batch_size: int | None = None,
                  coverage_fraction: float = 0.5, top_q: float = 0.2, limit: int | None = None,
                  on_batch: Callable[[int], None] | None = None) -> dict[str, dict[str, float]]:
    """Scores of both models over the data set in `data_dir` (maps of the true class)."""
    records = read_dataset(data_dir)[:limit]
    check_labels(pair, records, data_dir)
    scores = {role: ModelScores() for role in ROLES}
    preprocess = pair.preprocess
    batch_size = batch_size or default_batch_size(pair.device)
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        x = torch.stack([preprocess.to_tensor(load_image(r.image_path)) for r in chunk]).to(pair.device)
        labels = torch.tensor([r.label for r in chunk])
        masks = [_masks_as_seen(r, preprocess) for r in chunk]
        for role, loaded in zip(ROLES, (pair.baseline, pair.nc)):
            k = min(top_k, loaded.model.fc.in_features)
            with FeatureHook(classifier_of(loaded.model)[0]) as hook:
                out = compute_cams(loaded.model, x, labels.to(pair.device), top_k=k).to("cpu")
            scores[role].published_corr.extend(published_corr(hook.features.float()).tolist())
            _score_batch(scores[role], out, labels, masks, chunk, coverage_fraction, top_q)
        if on_batch:
            on_batch(len(chunk))
    result = {role: s.summary() for role, s in scores.items()}
    for role in ROLES:
        result[role]["images"] = len(records)
        result[role]["multi_instance_images"] = sum(1 for r in records if r.instances > 1)
    return result


def _score_batch(scores: ModelScores, out, labels: torch.Tensor, masks: list[torch.Tensor],
                 records: Sequence[Record], fraction: float, top_q: float) -> None:
    predicted = out.logits.argmax(1)
    scores.correct.extend((predicted == labels).tolist())
    correlation, iou = neuron_map_diversity(out.neuron_maps, top_q)
    scores.correlation.extend(correlation.tolist())
    scores.iou.extend(iou.tolist())
    for i, record in enumerate(records):
        cam = out.cam[i]
        scores.energy.append(energy_in_masks(cam, masks[i]))
        scores.pointing.append(pointing_game(cam, masks[i]))
        if record.instances > 1:
            scores.coverage_multi.append(instance_coverage(cam, masks[i], fraction))


METRIC_LABELS = {
    "accuracy": "accuracy",
    "energy_in_masks": "CAM energy inside masks",
    "pointing_game": "pointing game",
    "instance_coverage_multi": "instance coverage (multi-instance)",
    "topk_mean_pairwise_corr": "top-k maps: mean pairwise corr (lower = more diverse)",
    "topk_mean_pairwise_iou": "top-k maps: mean pairwise IoU (lower = more diverse)",
    "published_corr": "all last-layer channels: published 'Corr' (lower = more diverse)",
}


def markdown_table(result: dict[str, dict[str, float]]) -> str:
    """The side-by-side table printed by `ncviz evaluate` (Markdown, pastes into a README)."""
    lines = ["| metric | baseline | NC |", "|---|---:|---:|"]
    for key, label in METRIC_LABELS.items():
        b, n = result["baseline"][key], result["nc"][key]
        lines.append(f"| {label} | {b:.4f} | {n:.4f} |")
    lines.append(f"| images (multi-instance) | {result['baseline']['images']} "
                 f"({result['baseline']['multi_instance_images']}) | |")
    return "\n".join(lines)
