"""The synthetic localisation data: determinism, masks, instance counts, files on disk."""
from __future__ import annotations

import numpy as np
import pytest

from nc_viz.errors import NcVizError
from nc_viz.synth import (CLASS_NAMES, MULTI_SHARE, SyntheticShapes, generate_sample, read_dataset, read_masks,
                          write_dataset)


def test_same_seed_and_index_give_identical_samples():
    a, b = generate_sample(7, 3), generate_sample(7, 3)
    assert a.image.tobytes() == b.image.tobytes() and (a.masks == b.masks).all() and a.label == b.label
    assert generate_sample(7, 4).image.tobytes() != a.image.tobytes()


def test_at_least_eight_shape_classes_all_occur():
    assert len(CLASS_NAMES) >= 8 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    labels = {generate_sample(i, 0).label for i in range(300)}
    assert labels == set(range(len(CLASS_NAMES)))


def test_masks_cover_their_objects_and_do_not_overlap():
    for i in range(60):
        s = generate_sample(i, 1)
        assert s.masks.dtype == bool and s.masks.shape[1:] == s.image.shape[:2]
        areas = s.masks.reshape(len(s.masks), -1).sum(1)
        assert (areas >= 12).all(), f"sample {i}: an instance is (nearly) invisible"
        assert s.masks.sum(0).max() <= 1 or (s.masks.sum(0) > 1).sum() < 0.1 * areas.min()
        # the object differs from the background just outside it
        for m, (x0, y0, x1, y1) in zip(s.masks, s.boxes):
            assert m[y0:y1, x0:x1].sum() == m.sum()


def test_instance_counts_and_the_multi_instance_share():
    counts = [generate_sample(i, 2).masks.shape[0] for i in range(400)]
    assert set(counts) <= {1, 2, 3, 4} and {2, 3, 4} <= set(counts)
    share = np.mean([c > 1 for c in counts])
    assert abs(share - MULTI_SHARE) < 0.08


def test_dataset_yields_normalisable_tensors():
    ds = SyntheticShapes(4, seed=0, size=32)
    x, label = ds[1]
    assert tuple(x.shape) == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert label == generate_sample(1, 0, 32).label and len(ds) == 4


def test_write_and_read_round_trip(tmp_path):
    root = write_dataset(tmp_path / "d", count=6, seed=5, size=32)
    records = read_dataset(root)
    assert len(records) == 6
    for i, rec in enumerate(records):
        s = generate_sample(i, 5, 32)
        assert rec.label == s.label and rec.class_name == CLASS_NAMES[s.label] and rec.instances == len(s.masks)
        assert (read_masks(rec) == s.masks).all()
    again = write_dataset(tmp_path / "e", count=6, seed=5, size=32)
    assert (again / "labels.csv").read_bytes() == (root / "labels.csv").read_bytes()
    assert (again / "images" / "00003.png").read_bytes() == (root / "images" / "00003.png").read_bytes()


def test_missing_labels_file_is_a_clear_error(tmp_path):
    with pytest.raises(NcVizError, match="labels.csv"):
        read_dataset(tmp_path)
