"""The synthetic shapes data set: determinism, masks, instance counts, files on disk."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from nc_viz.core.errors import NcVizError
from nc_viz.datasets import read_annotated, read_instance_masks
from nc_viz.datasets.synth import (CLASS_NAMES, MULTI_SHARE, SyntheticShapes, generate_sample, instance_map,
    write_dataset)


@pytest.fixture(scope="module")
def samples():
    return [generate_sample(i, seed=7) for i in range(300)]


def test_class_names_are_distinct_lowercase_words():
    assert len(CLASS_NAMES) >= 8
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert all(name.isalpha() and name.islower() for name in CLASS_NAMES)


def test_same_seed_and_index_give_identical_samples():
    a, b = generate_sample(5, 3), generate_sample(5, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes()
    assert (a.label, a.boxes, a.radii) == (b.label, b.boxes, b.radii)


def test_order_does_not_matter():
    forward = [generate_sample(i, 11).image for i in range(4)]
    backward = [generate_sample(i, 11).image for i in reversed(range(4))][::-1]
    assert all(np.array_equal(f, b) for f, b in zip(forward, backward))


def test_different_seed_or_index_gives_a_different_image():
    base = generate_sample(0, 1).image
    assert not np.array_equal(base, generate_sample(0, 2).image)
    assert not np.array_equal(base, generate_sample(1, 1).image)


@pytest.mark.parametrize("size", [32, 64, 96])
def test_shapes_and_types(size):
    s = generate_sample(3, 0, size)
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.masks.dtype == bool and s.masks.shape[1:] == (size, size)
    assert s.masks.shape[0] == len(s.boxes) == len(s.radii) == s.instances
    assert 0 <= s.label < len(CLASS_NAMES) and s.class_name == CLASS_NAMES[s.label]


def test_masks_fit_their_scale_and_boxes_and_are_disjoint(samples):
    for s in samples:
        assert s.masks.sum(0).max() <= 1, "instances overlap"
        for mask, box, r in zip(s.masks, s.boxes, s.radii):
            area = int(mask.sum())
            # every shape covers between ~1/4 and all of its circumscribed disc
            assert 0.2 * math.pi * r * r <= area <= math.pi * (r + 1) ** 2, (s.class_name, area, r)
            ys, xs = np.nonzero(mask)
            assert box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert max(box[2] - box[0], box[3] - box[1]) <= 2 * r + 2


def test_masks_mark_pixels_that_differ_from_the_surroundings(samples):
    """An object's pixels differ clearly from the ring of background just outside it."""
    contrasts = []
    for s in samples[:100]:
        img = s.image.astype(float)
        for mask in s.masks:
            grown = mask.copy()
            for _ in range(3):
                grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0) | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
            ring = grown & ~s.masks.any(0)
            contrasts.append(np.linalg.norm(img[mask].mean(0) - img[ring].mean(0)))
    assert np.median(contrasts) > 60
    assert np.mean(np.array(contrasts) > 25) > 0.95


def test_instance_counts_and_multi_share(samples):
    counts = np.array([s.instances for s in samples])
    assert counts.min() >= 1 and counts.max() <= 4
    share = float(np.mean(counts > 1))
    assert abs(share - MULTI_SHARE) < 0.08
    assert {2, 3, 4} <= set(counts.tolist())


def test_multi_share_can_be_set():
    assert all(generate_sample(i, 0, multi_share=0.0).instances == 1 for i in range(30))
    assert all(generate_sample(i, 0, multi_share=1.0).instances >= 2 for i in range(30))


def test_all_classes_occur(samples):
    assert {s.label for s in samples} == set(range(len(CLASS_NAMES)))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        generate_sample(-1, 0)
    with pytest.raises(ValueError):
        generate_sample(0, 0, size=8)
    with pytest.raises(ValueError):
        generate_sample(0, 0, multi_share=1.5)


def test_dataset_items():
    torch = pytest.importorskip("torch")
    ds = SyntheticShapes(5, seed=2, size=32)
    assert len(ds) == 5
    x, y = ds[1]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    s = generate_sample(1, 2, 32)
    assert y == s.label
    assert np.array_equal((x * 255).round().byte().permute(1, 2, 0).numpy(), s.image)
    assert ds[-1][1] == ds[4][1]
    with pytest.raises(IndexError):
        ds[5]
    shapes = SyntheticShapes(3, seed=2, size=32, transform=lambda im: im.shape)
    assert shapes[0][0] == (32, 32, 3)


def test_write_read_round_trip(tmp_path):
    root = write_dataset(tmp_path / "ds", 12, seed=4, size=32, multi_share=0.5)
    assert (root / "classes.txt").read_text().split() == list(CLASS_NAMES)
    assert (root / "labels.csv").read_text().splitlines()[0] == "file,label,class_name,instances"
    from nc_viz.datasets import synth

    assert not [n for n in synth.__all__ if n.startswith("read")]  # one reader of the layout: datasets/ncviz.py
    data = read_annotated(root, "ncviz", strict=True)  # the reader `evaluate` uses
    assert data.class_names == list(CLASS_NAMES) and not data.problems
    assert [r.image_id for r in data.samples] == [f"images/{i:05d}.png" for i in range(12)]
    for i, r in enumerate(data.samples):
        s = generate_sample(i, 4, 32, multi_share=0.5)
        assert (r.label, data.class_names[r.label], r.size) == (s.label, s.class_name, (32, 32))
        assert np.array_equal(np.asarray(Image.open(r.path)), s.image)
        ids = np.asarray(Image.open(r.mask_paths[0]))
        assert ids.dtype == np.uint8
        assert set(np.unique(ids).tolist()) == set(range(s.instances + 1))
        assert np.array_equal(ids, instance_map(s.masks))
        assert np.array_equal(read_instance_masks(r), s.masks)
        assert np.array_equal(r.boxes, np.array(s.boxes, dtype=np.float64).reshape(-1, 4))
    assert any(len(r.boxes) > 1 for r in data.samples)
    assert not list(root.rglob("*.part"))


def test_written_bytes_are_reproducible(tmp_path):
    a = write_dataset(tmp_path / "a", 3, seed=9, size=32)
    b = write_dataset(tmp_path / "b", 3, seed=9, size=32)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_missing_labels_file_names_it(tmp_path):
    with pytest.raises(NcVizError, match="labels.csv"):
        read_annotated(tmp_path, "ncviz")


@pytest.mark.parametrize("text, match", [
    ("", "bad header"),
    ("image,label\nimages/0.png,1\n", "bad header"),
    ("file,label,class_name,instances\nimages/00000.png,1,square\n", "line 2"),
    ("file,label,class_name,instances\nimages/00000.png,one,square,1\n", "line 2"),
    ("file,label,class_name,instances\nimages/00000.png,1,square,0\n", "line 2"),
    ("file,label,class_name,instances\n../x.png,1,square,1\n", "line 2"),
])
def test_malformed_labels_file_names_it(tmp_path, text, match):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(NcVizError, match=match) as info:
        read_annotated(tmp_path, "ncviz", strict=True)
    assert "labels.csv" in str(info.value) and "\n" not in str(info.value)


def test_a_smaller_data_set_over_a_larger_one_warns_about_the_leftovers(tmp_path, caplog):
    write_dataset(tmp_path, 5, seed=1, size=32)
    write_dataset(tmp_path, 2, seed=1, size=32)
    assert "3 images of an earlier data set remain" in caplog.text
    assert len(read_annotated(tmp_path, "ncviz").samples) == 2
