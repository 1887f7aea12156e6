"""Readers of annotated data sets: one reader per layout, registered by
name (`registry.py`), each returning a `Dataset` of `Sample`s with boxes in original pixels,
class names where known, and the `Problem`s met on the way. No torch here.
"""
from __future__ import annotations

from .base import Dataset, Problem, Sample, boxes_at_size, check_classes, image_size
from .masks import read_ignore_mask, read_instance_masks
from .registry import detect_format, read_annotated, reader_names

__all__ = ["Dataset", "Problem", "Sample", "boxes_at_size", "check_classes", "detect_format",
           "image_size", "read_annotated", "read_ignore_mask", "read_instance_masks", "reader_names"]
