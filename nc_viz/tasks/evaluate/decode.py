"""Decoding for `evaluate`, in the engine's DataLoader workers: each image at S x S (no crop)
with its boxes and masks at S; a failure is the item's error, never raised."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...models.inputs import load_image
from ...datasets import Sample, boxes_at_size, image_size, read_ignore_mask, read_instance_masks
from ...core.errors import first_line


@dataclass
class EvalItem:
    """One decoded image at S x S with its ground truth at S, or why it could not be read."""

    position: int                       # in the whole (unsharded) list of samples
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
    """Decodes the samples at `positions` (this rank's shard), one per item."""

    def __init__(self, samples: Sequence[Sample], positions: Sequence[int], preprocess: Any) -> None:
        self.samples = samples
        self.positions = list(positions)
        self.preprocess = preprocess
        self.size = preprocess.input_size

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> EvalItem:
        position = self.positions[index]
        try:
            return self._decode(position, self.samples[position])
        except Exception as exc:  # noqa: BLE001 - one bad image is counted, never fatal
            return EvalItem(position, error=first_line(exc))

    def _decode(self, position: int, sample: Sample) -> EvalItem:
        x = self.preprocess.to_tensor(load_image(sample.path, exif=False))  # boxes are in stored pixels
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


def collate_items(items: Sequence[EvalItem]) -> list[EvalItem]:
    """A batch is the list of its items (failures included); stacking waits for the forward pass."""
    return list(items)
