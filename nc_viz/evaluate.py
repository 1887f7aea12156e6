"""`ncviz evaluate`: both models on an annotated data set, in the field's protocol (DESIGN 2.4).

Every image is resized to S x S without a crop (S = the models' input size), its boxes with it
(`datasets.boxes_at_size`, the reference's `resize_bbox`) and its masks (nearest, as OpenCV's
`INTER_NEAREST`). Each model explains the true class (`map_class="true"`, default) or its own
prediction; its raw CAM is resized to S x S (bicubic) and min-max normalised exactly as
clovaai/wsolevaluation's `inference.py` does (`metrics.wsol`), then scored: MaxBoxAcc,
MaxBoxAccV2, GT-known / Top-1 Loc, PxAP with masks; the share of positive CAM energy inside the
ground truth, the pointing game, multi-instance coverage; neuron diversity and the published
'Corr'. Counts and histograms are accumulated; per-image numbers stream to a records file, and
the per-image threshold outcomes are kept (bit-packed, 500 bytes per image and model) for the
paired bootstrap of `metrics.bootstrap`.
"""
from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .api import ModelPair, default_batch_size
from .engine.decode import quiet_worker_shutdown
from .engine.workers import default_workers
from .cam import FeatureHook, classifier_of, compute_cams
from .data import load_image
from .datasets import Dataset, Sample, boxes_at_size, check_classes, image_size
from .datasets import read_ignore_mask, read_instance_masks
from .errors import UsageError, first_line
from .metrics import energy_in_masks, instance_coverage, neuron_map_diversity, published_corr
from .metrics.bootstrap import Interval, paired_bootstrap_max_over_tau, paired_bootstrap_mean
from .metrics.wsol import (
    CAM_PAPER_TAU_INDEX,
    BoxAccumulator,
    BoxCorrectness,
    MaskAccumulator,
    box_correctness,
    box_masks,
    normalize_scoremap,
    pack_correctness,
    pointing_hit,
    pointing_tolerance,
    resize_scoremap,
    unpack_correctness,
)
from .outputs.records import RecordWriter

log = logging.getLogger(__name__)

ROLES = ("baseline", "nc")
MAP_CLASSES = ("true", "predicted")
RECORD_METRICS = ("probability", "iou_tau_0.2", "gt_known_loc", "top1_loc", "energy", "pointing",
                  "coverage_multi", "topk_corr", "topk_iou", "published_corr")
MEAN_METRICS = {  # per-image record column -> result key; their mean is the data set's number
    "correct": "accuracy", "gt_known_loc": "gt_known_loc", "top1_loc": "top1_loc", "energy": "energy",
    "pointing": "pointing_game", "coverage_multi": "instance_coverage_multi", "topk_corr": "topk_corr",
    "topk_iou": "topk_iou", "published_corr": "published_corr",
}
PERCENT = {"gt_known_loc", "top1_loc", "max_box_acc", "max_box_acc_v2"}  # reported in percent, as the reference


@dataclass(frozen=True)
class EvalOptions:
    """How `evaluate_dataset` scores (the CLI's flags)."""

    top_k: int = 8
    map_class: str = "true"
    fraction: float = 0.5
    pointing_tolerance: float | None = None   # pixels at S; None: 15 px at S = 224, scaled with S
    top_q: float = 0.2
    batch_size: int | None = None
    workers: int | None = None
    limit: int | None = None
    bootstrap: int = 1000
    seed: int = 0

    def check(self) -> None:
        """Option checks that need no model (UsageError naming the flag)."""
        if self.map_class not in MAP_CLASSES:
            raise UsageError(f"--map-class {self.map_class}: choose from {', '.join(MAP_CLASSES)}")
        if not 0.0 < self.fraction <= 1.0:
            raise UsageError(f"--fraction {self.fraction}: use a share in (0, 1]")
        if self.pointing_tolerance is not None and self.pointing_tolerance < 0:
            raise UsageError(f"--pointing-tolerance {self.pointing_tolerance}: must be 0 or more")
        if self.bootstrap < 1:
            raise UsageError(f"--bootstrap {self.bootstrap}: must be at least 1")


# ----------------------------------------------------------------------------- decoding


@dataclass
class EvalItem:
    """One decoded image at S x S with its ground truth at S, or why it could not be read."""

    position: int
    x: torch.Tensor | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    regions: np.ndarray | None = None   # (n, S, S) bool instance masks at S, when the data has masks
    ignore: np.ndarray | None = None    # (S, S) bool, the reference's ignore region
    error: str | None = None


def nearest_like_cv2(mask: np.ndarray, size: int) -> np.ndarray:
    """`cv2.resize(mask, (S, S), interpolation=cv2.INTER_NEAREST)` of a (..., H, W) array:
    source index `floor(i * H / S)`, as the reference resizes its masks."""
    h, w = mask.shape[-2:]
    rows = np.minimum(np.floor(np.arange(size) * (1.0 / (size / h))).astype(np.int64), h - 1)  # cv2: 1 / fx
    cols = np.minimum(np.floor(np.arange(size) * (1.0 / (size / w))).astype(np.int64), w - 1)
    return mask[..., rows[:, None], cols[None, :]]


class EvalImages(torch.utils.data.Dataset):
    """Decodes one sample per item, in DataLoader workers; failures are returned, not raised."""

    def __init__(self, samples: Sequence[Sample], preprocess: Any) -> None:
        self.samples = list(samples)
        self.preprocess = preprocess
        self.size = preprocess.input_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, position: int) -> EvalItem:
        sample = self.samples[position]
        try:
            return self._decode(position, sample)
        except Exception as exc:  # noqa: BLE001 - one bad image is counted, never fatal
            return EvalItem(position, error=first_line(exc))

    def _decode(self, position: int, sample: Sample) -> EvalItem:
        x = self.preprocess.to_tensor(load_image(sample.path))
        item = EvalItem(position, x=x)
        if len(sample.boxes):
            size = sample.size or image_size(sample.path)
            item.boxes = boxes_at_size(sample.boxes, size, self.size)
        if sample.mask_paths:
            masks = read_instance_masks(sample)
            item.regions = nearest_like_cv2(masks, self.size)
            ignore = read_ignore_mask(sample, masks.any(axis=0))
            item.ignore = None if ignore is None else nearest_like_cv2(ignore, self.size)
        return item


def _collate(items: Sequence[EvalItem]) -> list[EvalItem]:
    return list(items)


def decoded_batches(samples: Sequence[Sample], preprocess: Any, batch_size: int,
                    workers: int) -> Iterator[list[EvalItem]]:
    """Batches of decoded items in order (workers > 0 decode in parallel processes)."""
    extra: dict[str, Any] = {"prefetch_factor": 2, "worker_init_fn": quiet_worker_shutdown} if workers > 0 else {}
    loader = torch.utils.data.DataLoader(EvalImages(samples, preprocess), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=_collate, **extra)
    yield from loader


# ----------------------------------------------------------------------------- one model


@dataclass
class ModelTally:
    """What one model accumulates: counts, histograms, per-image threshold outcomes."""

    boxes: BoxAccumulator = field(default_factory=BoxAccumulator)
    masks: MaskAccumulator = field(default_factory=MaskAccumulator)
    packed_v1: list[np.ndarray] = field(default_factory=list)   # per boxed image, (125,) uint8
    packed_v2: list[np.ndarray] = field(default_factory=list)   # per boxed image, (3, 125) uint8
    boxed_ids: list[str] = field(default_factory=list)


def _regions_at(item: EvalItem, size: int) -> np.ndarray:
    """Instance regions at S: the masks when the data has them, else one per box."""
    if item.regions is not None:
        return item.regions
    return box_masks(item.boxes, size) if len(item.boxes) else np.zeros((0, size, size), bool)


def score_image(cam: torch.Tensor, item: EvalItem, correct: bool, size: int, options: EvalOptions,
                tally: ModelTally, image_id: str, save: Callable[[np.ndarray], None] | None) -> dict[str, float]:
    """The localisation numbers of one image and one model; adds to `tally`."""
    resized = resize_scoremap(cam.numpy(), size, dtype=np.float64)   # float64, as the reference's maps
    scoremap = normalize_scoremap(resized)
    if save is not None:
        save(scoremap)
    numbers: dict[str, float] = {}
    if len(item.boxes):
        outcome: BoxCorrectness = box_correctness(scoremap, item.boxes)
        tally.boxes.add(outcome, correct)
        tally.packed_v1.append(pack_correctness(outcome.v1))
        tally.packed_v2.append(pack_correctness(outcome.v2))
        tally.boxed_ids.append(image_id)
        hit = bool(outcome.v1[CAM_PAPER_TAU_INDEX])
        numbers.update({"iou_tau_0.2": float(outcome.best_iou_v1[CAM_PAPER_TAU_INDEX]),
                        "gt_known_loc": float(hit), "top1_loc": float(hit and correct)})
    if item.regions is not None:
        tally.masks.add(scoremap, item.regions.any(axis=0), item.ignore)
    regions = _regions_at(item, size)
    if len(regions):
        raw, truth = torch.from_numpy(resized.astype(np.float32)), torch.from_numpy(regions)
        tolerance = options.pointing_tolerance if options.pointing_tolerance is not None else pointing_tolerance(size)
        numbers["energy"] = float(energy_in_masks(raw, truth))
        numbers["pointing"] = float(pointing_hit(scoremap, regions, tolerance))
        numbers["coverage_multi"] = (float(instance_coverage(raw, truth, options.fraction)) if len(regions) > 1
                                     else math.nan)
    return numbers


# ----------------------------------------------------------------------------- the run


@dataclass
class Evaluation:
    """The outcome of `evaluate_dataset`: numbers per model, intervals, and what was skipped."""

    results: dict[str, dict[str, Any]]
    intervals: dict[str, Interval]
    images: int
    failed: list[tuple[str, str]]
    curves: dict[str, dict[str, list[float]]]
    correctness: dict[str, dict[str, np.ndarray]]   # role -> {"v1": (N, 125), "v2": (N, 3, 125)} packed
    boxed_ids: list[str]


class ForwardBoth:
    """Both models on one batch: logits, CAMs of the explained class, top-k neuron maps, 'Corr'."""

    def __init__(self, pair: ModelPair, options: EvalOptions) -> None:
        self.pair = pair
        self.options = options

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        x = x.to(self.pair.device)
        target = labels.to(self.pair.device) if self.options.map_class == "true" else None
        outputs = {}
        for role, loaded in zip(ROLES, (self.pair.baseline, self.pair.nc)):
            k = min(self.options.top_k, classifier_of(loaded.model)[1].in_features)
            with FeatureHook(classifier_of(loaded.model)[0]) as hook:
                out = compute_cams(loaded.model, x, target, top_k=k)
            corr, iou = neuron_map_diversity(out.neuron_maps, self.options.top_q)
            outputs[role] = {"logits": out.logits.float().cpu(), "cam": out.cam.float().cpu(),
                             "topk_corr": corr.cpu(), "topk_iou": iou.cpu(),
                             "published_corr": published_corr(hook.features.float()).cpu()}
        return outputs


def _row(sample: Sample, role: str, out: dict[str, torch.Tensor], i: int, numbers: dict[str, float]) -> dict[str, Any]:
    probs = torch.softmax(out["logits"][i], dim=0)
    predicted = int(probs.argmax())
    return {"image_id": sample.image_id, "role": role, "label": sample.label, "predicted": predicted,
            "correct": predicted == sample.label, "probability": float(probs[predicted]),
            "topk_corr": float(out["topk_corr"][i]), "topk_iou": float(out["topk_iou"][i]),
            "published_corr": float(out["published_corr"][i]), **numbers}


def _map_saver(save_maps: Path | None, role: str, image_id: str) -> Callable[[np.ndarray], None] | None:
    """Writes `save_maps/<role>/<image_id>.npy` (the reference's layout), or None."""
    if save_maps is None:
        return None
    path = save_maps / role / f"{image_id}.npy"

    def save(scoremap: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)

    return save


def evaluate_dataset(pair: ModelPair, dataset: Dataset, options: EvalOptions = EvalOptions(),
                     records_path: Path | None = None, save_maps: Path | None = None,
                     on_batch: Callable[[int], None] | None = None) -> Evaluation:
    """Score both models on `dataset` (already read); per-image rows go to `records_path`."""
    options.check()
    meta = pair.baseline.meta
    check_classes(dataset, meta.num_classes, meta.class_names)
    samples = dataset.samples[:options.limit]
    preprocess = replace(pair.preprocess, center_crop=False)   # the protocol: S x S, no crop
    size = preprocess.input_size
    forward = ForwardBoth(pair, options)
    tallies = {role: ModelTally() for role in ROLES}
    failed: list[tuple[str, str]] = []
    scratch = None
    if records_path is None:
        scratch = tempfile.TemporaryDirectory(prefix="ncviz-eval-")
        records_path = Path(scratch.name) / "records.csv"
    workers = default_workers() if options.workers is None else options.workers
    batch_size = options.batch_size or default_batch_size(pair.device)
    try:
        with RecordWriter(records_path, RECORD_METRICS) as writer:
            for items in decoded_batches(samples, preprocess, batch_size, workers):
                good = [it for it in items if it.error is None]
                failed.extend((str(samples[it.position].path), it.error or "") for it in items if it.error)
                if good:
                    writer.write(_score_batch(good, samples, forward, size, options, tallies, save_maps))
                if on_batch:
                    on_batch(len(items))
        from .outputs.records import read_records

        rows = read_records(records_path)
    finally:
        if scratch is not None:
            scratch.cleanup()
    for path, reason in failed:
        log.warning("%s: %s (skipped)", path, reason)
    return _summarise(rows, tallies, options, len(samples) - len(failed), failed)


def _score_batch(items: Sequence[EvalItem], samples: Sequence[Sample], forward: ForwardBoth, size: int,
                 options: EvalOptions, tallies: dict[str, ModelTally], save_maps: Path | None) -> list[dict[str, Any]]:
    """Forward one batch through both models and score every image; the records' rows."""
    batch = [samples[it.position] for it in items]
    outputs = forward(torch.stack([it.x for it in items]), torch.tensor([s.label for s in batch]))
    rows = []
    for i, (item, sample) in enumerate(zip(items, batch)):
        for role in ROLES:
            out = outputs[role]
            correct = int(out["logits"][i].argmax()) == sample.label
            numbers = score_image(out["cam"][i], item, correct, size, options, tallies[role], sample.image_id,
                                  _map_saver(save_maps, role, sample.image_id))
            rows.append(_row(sample, role, out, i, numbers))
    return rows


def _column(rows: Sequence[dict[str, Any]], role: str, column: str) -> np.ndarray:
    values = [r.get(column) for r in rows if r["role"] == role]
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _summarise(rows: Sequence[dict[str, Any]], tallies: dict[str, ModelTally], options: EvalOptions,
               images: int, failed: list[tuple[str, str]]) -> Evaluation:
    """Means, the reference's box and mask numbers, and the paired intervals."""
    results: dict[str, dict[str, Any]] = {role: {"images": images} for role in ROLES}
    intervals: dict[str, Interval] = {}
    for column, key in MEAN_METRICS.items():
        base, nc = _column(rows, "baseline", column), _column(rows, "nc", column)
        if np.isnan(base).all():
            continue
        scale = 100.0 if key in PERCENT else 1.0
        interval = paired_bootstrap_mean(base, nc, options.bootstrap, options.seed)
        intervals[key] = _scaled(interval, scale)
        results["baseline"][key], results["nc"][key] = intervals[key].base, intervals[key].nc
    curves: dict[str, dict[str, list[float]]] = {}
    correctness: dict[str, dict[str, np.ndarray]] = {}
    if tallies["baseline"].boxes.count:
        _box_results(tallies, options, results, intervals, curves, correctness)
    for role in ROLES:
        if tallies[role].masks.count:
            results[role]["pxap"] = tallies[role].masks.result()["pxap"]
    return Evaluation(results, intervals, images, failed, curves, correctness, tallies["baseline"].boxed_ids)


def _box_results(tallies: dict[str, ModelTally], options: EvalOptions, results: dict[str, dict[str, Any]],
                 intervals: dict[str, Interval], curves: dict[str, dict[str, list[float]]],
                 correctness: dict[str, dict[str, np.ndarray]]) -> None:
    """MaxBoxAcc (V1) and MaxBoxAccV2 with their best taus, and their intervals with tau re-chosen."""
    for role in ROLES:
        box = tallies[role].boxes.result()
        results[role].update({"max_box_acc": box["max_box_acc"], "max_box_acc_v2": box["max_box_acc_v2"],
                              "box_acc_v2_by_delta": box["box_acc_v2_by_delta"],
                              "best_tau_by_delta": box["best_tau_by_delta"], "best_tau_v1": box["best_tau_v1"],
                              "boxed_images": box["count"]})
        curves[role] = box["curves"]
        correctness[role] = {"v1": np.stack(tallies[role].packed_v1), "v2": np.stack(tallies[role].packed_v2)}
    for key, kind in (("max_box_acc", "v1"), ("max_box_acc_v2", "v2")):
        base = unpack_correctness(correctness["baseline"][kind])
        nc = unpack_correctness(correctness["nc"][kind])
        intervals[key] = _scaled(paired_bootstrap_max_over_tau(base, nc, options.bootstrap, options.seed), 100.0)


def _scaled(interval: Interval, scale: float) -> Interval:
    """The interval in other units (accuracies in percent, as the reference prints them)."""
    if scale == 1.0:
        return interval
    return replace(interval, diff=interval.diff * scale, low=interval.low * scale, high=interval.high * scale,
                   base=interval.base * scale, nc=interval.nc * scale)


__all__ = ["EvalOptions", "Evaluation", "evaluate_dataset", "nearest_like_cv2", "score_image", "ROLES",
           "MAP_CLASSES"]
