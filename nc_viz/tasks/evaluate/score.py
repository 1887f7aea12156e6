"""One batch of `evaluate`: both models forward on the device (autocast, out-of-memory
halving by the engine), then each image's map scored in the reference's protocol.

The per-image metric columns are filled by the measures registered with the metrics
(`metrics.specs`, `metrics.measures`): no metric has a line of its own here."""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...pair import ModelPair, autocast_dtype
from ...core.io import atomic_write_bytes
from ...cams.compute import classifier_of, compute_cams
from ...models import features_hook
from ...datasets import Sample
from ...metrics.faithfulness import FAITHFULNESS
from ...metrics.measures import ForwardView, MapView
from ...metrics.specs import measured_columns, measures
from ...metrics.wsol import (BoxAccumulator, BoxCorrectness, MaskAccumulator, box_correctness, box_masks,
    mask_histograms, pointing_tolerance, scored_maps)
from .decode import EvalItem
from .options import ROLES, EvalOptions

from .outcomes import HistogramWriter, OutcomeWriter


@dataclass
class ModelTally:
    """What one model accumulates: counts and histograms here, per-image outcomes on disk."""

    boxes: BoxAccumulator = field(default_factory=BoxAccumulator)
    masks: MaskAccumulator = field(default_factory=MaskAccumulator)
    outcomes: OutcomeWriter | None = None
    histograms: HistogramWriter | None = None                     # per-image mask histograms (PxAP)
    curves: dict[str, np.ndarray] = field(default_factory=dict)   # deletion/insertion: sum over images
    curve_images: int = 0
    non_finite: int = 0                                            # images whose logits or map were not finite

    def add_finiteness(self, out: dict[str, torch.Tensor]) -> None:
        """Count a chunk's images whose logits or CAM hold a NaN or an infinity (NaN weights)."""
        finite = torch.isfinite(out["logits"]).flatten(1).all(1) & torch.isfinite(out["cam"]).flatten(1).all(1)
        self.non_finite += int((~finite).sum())

    def add_curves(self, out: dict[str, torch.Tensor]) -> None:
        """Add a chunk's deletion/insertion curves (N, n + 1) to the sums (for the mean curves)."""
        for name in [n for n in out if n.endswith("_curve")]:
            chunk = out[name].double().sum(dim=0).numpy()
            self.curves[name] = self.curves[name] + chunk if name in self.curves else chunk
        if any(n.endswith("_curve") for n in out):
            self.curve_images += len(out["logits"])

    def state(self) -> dict[str, Any]:
        """The accumulators as plain arrays (picklable, for the ranks' exchange)."""
        return {"boxes": self.boxes.to_state(), "masks": self.masks.to_state(),
                "curves": dict(self.curves), "curve_images": self.curve_images, "non_finite": self.non_finite}


def _regions_at(item: EvalItem, size: int) -> np.ndarray:
    """Instance regions at S: the masks when the data has them, else one per box."""
    if item.regions is not None:
        return item.regions
    return box_masks(item.boxes, size) if len(item.boxes) else np.zeros((0, size, size), bool)


@dataclass
class ImageScore:
    """One image's numbers for one model, computed without touching any accumulator (so images
    can be measured in parallel threads and tallied afterwards in order)."""

    numbers: dict[str, float]
    outcome: BoxCorrectness | None = None                         # with boxes
    histograms: tuple[np.ndarray, np.ndarray] | None = None       # with masks (PxAP)

    def tally(self, item: EvalItem, correct: bool, tally: ModelTally) -> None:
        """Add this image to one model's accumulators and per-image files."""
        if self.outcome is not None:
            tally.boxes.add(self.outcome, correct)
            if tally.outcomes is not None:
                tally.outcomes.add(item.position, self.outcome.v1, self.outcome.v2)
        if self.histograms is not None:
            tally.masks.add_histograms(*self.histograms)
            if tally.histograms is not None:
                tally.histograms.add(item.position, *self.histograms)


def measure_image(cam: torch.Tensor, item: EvalItem, correct: bool, size: int, options: EvalOptions,
                  save: Callable[[np.ndarray], None] | None = None) -> ImageScore:
    """The localisation numbers of one image and one model (pure: no accumulator is touched)."""
    resized, scoremap = scored_maps(cam.numpy(), size)   # float64, as the reference's maps
    if save is not None:
        save(scoremap)
    score = ImageScore({})
    if len(item.boxes):
        score.outcome = box_correctness(scoremap, item.boxes)
    if item.regions is not None:
        score.histograms = mask_histograms(scoremap, item.regions.any(axis=0), item.ignore)
    tolerance = options.pointing_tolerance if options.pointing_tolerance is not None else pointing_tolerance(size)
    view = MapView(resized, scoremap, _regions_at(item, size), score.outcome, correct, options.fraction, tolerance)
    for measure in measures("map"):
        score.numbers.update(measure.compute(view))
    return score


def score_image(cam: torch.Tensor, item: EvalItem, correct: bool, size: int, options: EvalOptions,
                tally: ModelTally, save: Callable[[np.ndarray], None] | None = None) -> dict[str, float]:
    """The localisation numbers of one image and one model; adds to `tally`."""
    score = measure_image(cam, item, correct, size, options, save)
    score.tally(item, correct, tally)
    return score.numbers


@dataclass
class EvalInputs:
    """A batch's images and the classes to explain, sliced together by the engine's AdaptiveForward."""

    x: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: slice) -> EvalInputs:
        return EvalInputs(self.x[index], self.labels[index])


class ForwardBoth:
    """Both models on one batch: logits, CAMs of the explained class, top-k neuron maps, 'Corr'."""

    def __init__(self, pair: ModelPair, options: EvalOptions) -> None:
        self.pair = pair
        self.options = options
        self.dtype = autocast_dtype(options.precision)

    def __call__(self, inputs: EvalInputs) -> dict[str, dict[str, torch.Tensor]]:
        x = inputs.x.to(self.pair.device, non_blocking=True)
        target = inputs.labels.to(self.pair.device) if self.options.map_class == "true" else None
        outputs = {}
        for role, loaded in self.pair.roles.items():
            k = min(self.options.top_k, classifier_of(loaded.model).in_features)
            with features_hook(loaded.model) as hook:
                out = compute_cams(loaded.model, x, target, top_k=k, autocast=self.dtype)
            view = ForwardView(out, hook.features, self.options.top_q)
            measured = {column: value.cpu() for measure in measures("forward")
                        for column, value in measure.compute(view).items()}
            outputs[role] = {"logits": out.logits.float().cpu(), "cam": out.cam.float().cpu(), **measured,
                             **self._faithfulness(loaded.model, x, out)}
        return outputs

    def _faithfulness(self, model: torch.nn.Module, x: torch.Tensor, out: Any) -> dict[str, torch.Tensor]:
        """The faithfulness columns (N,) of one model: its map of the explained class, on the
        same images (perturbed copies forwarded in large batches; see metrics.faithfulness)."""
        if not self.options.faithfulness:
            return {}
        from ...metrics.faithfulness import FaithfulnessOptions, score_faithfulness

        options = FaithfulnessOptions(steps=self.options.steps, autocast=self.dtype, seed=self.options.seed)
        scores = score_faithfulness(model, x, out.cam.float(), out.target, self.options.faithfulness, options)
        return {name: value.float().cpu() for name, value in scores.items()}


def record_row(sample: Sample, role: str, out: dict[str, torch.Tensor], i: int,
               numbers: dict[str, float], columns: Sequence[str] | None = None) -> dict[str, Any]:
    """One row of records.csv: image `i` of a batch, one model. `columns`: those of `out` that
    hold a number per image (default: the forward measures' and the faithfulness columns)."""
    columns = _out_columns() if columns is None else columns
    probs = torch.softmax(out["logits"][i], dim=0)
    predicted = int(probs.argmax())
    labelled = sample.label >= 0   # an unlabelled image has no "correct" (and no accuracy)
    return {"image_id": sample.image_id, "role": role, "label": sample.label if labelled else None,
            "predicted": predicted, "correct": (predicted == sample.label) if labelled else None,
            "probability": float(probs[predicted]), **numbers,
            **{name: float(out[name][i]) for name in columns if name in out}}


def _out_columns() -> tuple[str, ...]:
    """The per-image columns a forward pass gives: the forward measures', then the faithfulness ones."""
    return measured_columns("forward") + tuple(column for metric in FAITHFULNESS.values() for column in metric.columns)


def map_path(save_maps: Path, role: str, image_id: str) -> Path:
    """Where `save_maps` puts one model's map of one image: `save_maps/<role>/<image_id>.npy`."""
    return save_maps / role / f"{image_id}.npy"


def map_saver(save_maps: Path | None, role: str, image_id: str) -> Callable[[np.ndarray], None] | None:
    """Writes `save_maps/<role>/<image_id>.npy` (the reference's layout), or None."""
    if save_maps is None:
        return None
    path = map_path(save_maps, role, image_id)

    def save(scoremap: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, scoremap)
        atomic_write_bytes(path, buffer.getvalue())   # whole, also when scoring threads write at once

    return save


def score_batch(items: Sequence[EvalItem], outputs: dict[str, dict[str, torch.Tensor]], samples: Sequence[Sample],
                size: int, options: EvalOptions, tallies: dict[str, ModelTally],
                save_maps: Path | None, pool: Executor | None = None) -> list[dict[str, Any]]:
    """Score every image of one forwarded chunk (`items[i]` is row i of `outputs`); the records' rows.

    With a `pool`, the images' maps are measured in its threads (the compiled box kernels and
    numpy release Python's lock); the accumulators are then added to in image order, so the
    result is the same as without one.
    """
    for role in ROLES:
        tallies[role].add_curves(outputs[role])
        tallies[role].add_finiteness(outputs[role])
    jobs = [(i, item, role) for i, item in enumerate(items) for role in ROLES]
    correct = {(i, role): int(outputs[role]["logits"][i].argmax()) == samples[item.position].label
               for i, item, role in jobs}

    def measure(job: tuple[int, EvalItem, str]) -> ImageScore:
        i, item, role = job
        return measure_image(outputs[role]["cam"][i], item, correct[i, role], size, options,
                             map_saver(save_maps, role, samples[item.position].image_id))

    scores = list(pool.map(measure, jobs)) if pool is not None else [measure(job) for job in jobs]
    rows = []
    columns = _out_columns()
    for (i, item, role), score in zip(jobs, scores):
        score.tally(item, correct[i, role], tallies[role])
        rows.append(record_row(samples[item.position], role, outputs[role], i, score.numbers, columns))
    return rows
