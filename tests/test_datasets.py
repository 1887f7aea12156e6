"""Readers of annotated data: every layout on a tiny fixture, the same images through every
layout, auto detection, problems counted (strict raises), class checks, box scaling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nc_viz.cli import main
from nc_viz.datasets import Dataset, Sample, boxes_at_size, check_classes, detect_format, read_annotated
from nc_viz.datasets.imagenet import imagenet_wnids
from nc_viz.datasets.masks import read_ignore_mask, read_instance_masks
from nc_viz.core.errors import NcVizError, UsageError
from nc_viz.datasets.synth import CLASS_NAMES, generate_sample
from conftest import black_image as _image, write_file as _write

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the same images, every layout

@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("made") / "heldout"
    assert main(["make-data", str(root), "--count", "24", "--seed", "5", "--size", "40"]) == 0
    return root


def test_make_data_writes_every_layout_and_each_reads_the_same_samples(made):
    """Catches a reader or writer that shifts a box, swaps x and y, loses an instance, or
    numbers classes from 1: labels, boxes and image sizes must agree exactly."""
    ref = read_annotated(made, strict=True)
    assert ref.format == "ncviz" and len(ref) == 24 and ref.class_names == list(CLASS_NAMES)
    others = [read_annotated(made / "wsol", strict=True),
              read_annotated(made / "xml", class_names=CLASS_NAMES, strict=True),
              read_annotated(made / "cub", images=made / "images", strict=True)]
    assert [d.format for d in others] == ["wsol", "imagenet", "cub"]
    for data in others:
        assert len(data) == len(ref) and not data.problems
        assert all(a.same_as(b) for a, b in zip(ref.samples, data.samples)), data.format
    assert any(len(s.boxes) > 1 for s in ref.samples)          # multi-instance images survive
    check_classes(others[1], len(CLASS_NAMES), CLASS_NAMES)
    check_classes(others[2], len(CLASS_NAMES), CLASS_NAMES)


def test_ncviz_boxes_are_the_generators_boxes(made):
    """Mask boxes end one past the last pixel (CUB's x + w, the reference's boundingRect)."""
    for i, s in enumerate(read_annotated(made).samples):
        assert np.array_equal(s.boxes, np.array(generate_sample(i, 5, 40).boxes, dtype=float))
        assert s.mask_paths == (made / "masks" / s.path.name,) and s.mask_encoding == "instance_ids"
        assert np.array_equal(read_instance_masks(s), generate_sample(i, 5, 40).masks)


def test_auto_detects_each_layout_and_refuses_ambiguity(made, tmp_path):
    assert [detect_format(p) for p in (made, made / "wsol", made / "xml", made / "cub")] == \
        ["ncviz", "wsol", "imagenet", "cub"]
    _image(tmp_path / "plain" / "cat" / "a.png")
    assert detect_format(tmp_path / "plain") == "folder"
    both = tmp_path / "both"
    _write(both / "labels.csv", "file,label,class_name,instances\n")
    _write(both / "images.txt", "")
    _write(both / "image_class_labels.txt", "")
    with pytest.raises(UsageError, match="ambiguous: looks like ncviz and cub"):
        detect_format(both)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no known data set layout.*give format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(UsageError, match="^format 'voc'"):
        read_annotated(made, "voc")


# ------------------------------------------------------------------ wsol

def _wsol_fixture(tmp_path: Path) -> Path:
    meta, data = tmp_path / "metadata" / "test", tmp_path / "dataset"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        _image(data / "val" / name)
    _write(meta / "image_ids.txt", "val/a.jpg\nval/b.jpg\nval/c.jpg\nval/d.jpg\nval/missing.jpg\n")
    _write(meta / "class_labels.txt", "val/a.jpg,3\nval/b.jpg,0\nval/c.jpg,1\nval/d.jpg,2\nval/missing.jpg,1\n")
    _write(meta / "image_sizes.txt", "val/a.jpg,50,40\nval/b.jpg,50,40\nval/c.jpg,50,40\nval/d.jpg,50,40\n")
    _write(meta / "localization.txt",
           "val/a.jpg,1,2,30,20\nval/a.jpg,10,5,49,39\n"      # two boxes, one image
           "val/b.jpg,5,5,60,20\n"                              # outside (x1 > w): b has no box left
           "val/c.jpg,7,7,7,30\nval/c.jpg,0,0,50,40\n"          # zero-area, then a full-image box
           "val/d.jpg,1,2,three,4\n"                            # unreadable line
           "val/missing.jpg,1,1,5,5\n")
    return meta


def test_wsol_reads_boxes_and_counts_problems(tmp_path):
    meta = _wsol_fixture(tmp_path)
    data = read_annotated(meta, images=tmp_path / "dataset")
    assert data.format == "wsol" and [s.image_id for s in data.samples] == ["val/a.jpg", "val/c.jpg"]
    a, c = data.samples
    assert a.label == 3 and a.size == (50, 40)
    assert np.array_equal(a.boxes, [[1, 2, 30, 20], [10, 5, 49, 39]])
    assert np.array_equal(c.boxes, [[0, 0, 50, 40]])          # x1 == w is allowed
    reasons = sorted(p.reason.split(":")[0] for p in data.problems)
    assert reasons == ["box outside its image", "missing image", "unreadable line", "zero-area box"]
    assert any("localization.txt, line 6" in p.where for p in data.problems)
    # the reference's metadata/<data set> folder of split folders: --split picks test
    assert detect_format(tmp_path / "metadata") == "wsol"
    split = read_annotated(tmp_path / "metadata", images=tmp_path / "dataset", split="test")
    assert [s.image_id for s in split.samples] == ["val/a.jpg", "val/c.jpg"]


def test_wsol_strict_names_the_file_and_line(tmp_path):
    meta = _wsol_fixture(tmp_path)
    with pytest.raises(NcVizError, match=r"localization.txt, line 6: val/d.jpg: unreadable line: box "):
        read_annotated(meta, images=tmp_path / "dataset", strict=True)
    (meta / "localization.txt").write_text("val/a.jpg,1,2,30,20\nval/b.jpg,5,5,60,20\n")
    with pytest.raises(NcVizError, match=r"localization.txt, line 2: val/b.jpg: box outside its image"):
        read_annotated(meta, images=tmp_path / "dataset", strict=True)


def test_wsol_masks_with_ignore_regions(tmp_path):
    """The reference's OpenImages lines: several masks per image, the ignore file on the first."""
    meta, data = tmp_path / "meta", tmp_path / "OpenImages"
    _image(data / "test" / "x.jpg")
    for m, (x0, x1) in {"x_m1.png": (0, 10), "x_m2.png": (20, 30), "x_ignore.png": (5, 40)}.items():
        plane = np.zeros((40, 50), dtype=np.uint8)
        plane[:, x0:x1] = 255
        Image.fromarray(plane).save(data / "test" / m)
    _write(meta / "image_ids.txt", "test/x.jpg\n")
    _write(meta / "class_labels.txt", "test/x.jpg,4\n")
    _write(meta / "image_sizes.txt", "")
    _write(meta / "localization.txt", "test/x.jpg,test/x_m1.png,test/x_ignore.png\ntest/x.jpg,test/x_m2.png,\n")
    (s,) = read_annotated(meta, "wsol", images=data, strict=True).samples
    assert s.mask_paths == (data / "test" / "x_m1.png", data / "test" / "x_m2.png")
    assert s.ignore_path == data / "test" / "x_ignore.png" and len(s.boxes) == 0 and s.size is None
    masks = read_instance_masks(s)
    assert masks.shape == (2, 40, 50) and masks[0, :, :10].all() and masks[1, :, 20:30].all()
    assert masks.sum() == 40 * 20
    ignore = read_ignore_mask(s)                         # ignore box minus the foreground
    assert ignore[:, 10:20].all() and ignore[:, 30:40].all() and ignore.sum() == 40 * 20


# ------------------------------------------------------------------ imagenet

def _voc(name: str, boxes: list[tuple[int, int, int, int]], w: int = 50, h: int = 40) -> str:
    objects = "".join(f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                      f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for b in boxes)
    return f"<annotation><size><width>{w}</width><height>{h}</height></size>{objects}</annotation>"


def test_imagenet_kaggle_layout_with_real_wnids(tmp_path):
    """wnid -> index by the sorted ILSVRC list: val_00000001's n01751748 is class 65, as in
    wsolevaluation's metadata/ILSVRC/test/class_labels.txt."""
    xml, img = tmp_path / "Annotations" / "CLS-LOC" / "val", tmp_path / "Data" / "CLS-LOC" / "val"
    _write(xml / "ILSVRC2012_val_00000001.xml", _voc("n01751748", [(11, 10, 44, 19), (1, 1, 20, 30)]))
    _write(xml / "ILSVRC2012_val_00000002.xml", _voc("n09193705", [(5, 5, 40, 30)]))
    _write(xml / "ILSVRC2012_val_00000003.xml", _voc("n99999999", [(5, 5, 40, 30)]))
    _write(xml / "ILSVRC2012_val_00000004.xml", "<annotation><size><width>50")
    for i in (1, 2, 3, 4):
        _image(img / f"ILSVRC2012_val_0000000{i}.JPEG")
    assert detect_format(tmp_path) == "imagenet"
    data = read_annotated(tmp_path)
    assert [(s.image_id, s.label) for s in data.samples] == [("ILSVRC2012_val_00000001.JPEG", 65),
                                                             ("ILSVRC2012_val_00000002.JPEG", 970)]
    assert np.array_equal(data.samples[0].boxes, [[11, 10, 44, 19], [1, 1, 20, 30]])
    assert data.num_classes == 1000 and data.class_names is None
    assert sorted(p.reason.split(":")[0] for p in data.problems) == ["unknown class 'n99999999' (not an ILSVRC-2012 wnid nor a class of the models)", "unreadable XML"]
    # an ImageNet model's readable names do not stop wnids from being read as wnids
    assert len(read_annotated(tmp_path, class_names=["tench"] * 1000)) == 2


def test_imagenet_wnid_list_is_the_standard_one():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids)) and list(wnids) == sorted(wnids)
    assert (wnids[0], wnids[-1]) == ("n01440764", "n15075141")
    assert (wnids.index("n01751748"), wnids.index("n09193705"), wnids.index("n02105855")) == (65, 970, 230)
    assert "datasets/imagenet_wnids.txt" in (ROOT / "setup.cfg").read_text()


# ------------------------------------------------------------------ cub

def _cub_fixture(root: Path) -> Path:
    for rel in ("001.Albatross/a_1.jpg", "001.Albatross/a_2.jpg", "002.Auklet/b_3.jpg"):
        _image(root / "images" / rel)
    _write(root / "images.txt", "1 001.Albatross/a_1.jpg\n2 001.Albatross/a_2.jpg\n3 002.Auklet/b_3.jpg\n")
    _write(root / "image_class_labels.txt", "1 1\n2 1\n3 2\n")
    _write(root / "bounding_boxes.txt", "1 6.0 2.0 25.5 10.0\n2 1.0 2.0 3.0 4.0\n3 10.0 5.0 0.0 8.0\n")
    _write(root / "train_test_split.txt", "1 0\n2 1\n3 0\n")
    _write(root / "classes.txt", "1 001.Albatross\n2 002.Auklet\n")
    return root


def test_cub_splits_boxes_and_labels(tmp_path):
    """1-based classes, (x, y, x + w, y + h) boxes, the test split by default; a zero-width box
    drops its image (counted)."""
    root = _cub_fixture(tmp_path / "CUB_200_2011")
    test = read_annotated(root)
    assert test.format == "cub" and test.class_names == ["001.Albatross", "002.Auklet"]
    (s,) = test.samples
    assert (s.image_id, s.label, s.size) == ("001.Albatross/a_1.jpg", 0, (50, 40))
    assert s.boxes.tolist() == [[6.0, 2.0, 31.5, 12.0]]
    assert [p.reason.split(":")[0] for p in test.problems] == ["zero-area box"]
    assert "bounding_boxes.txt, line 3" in test.problems[0].where
    assert [x.image_id for x in read_annotated(root, split="all").samples] == \
        ["001.Albatross/a_1.jpg", "001.Albatross/a_2.jpg"]
    assert [x.label for x in read_annotated(root, split="train").samples] == [0]
    with pytest.raises(UsageError, match="^split 'val': choose one of test, train, all for format cub"):
        read_annotated(root, split="val")


# ------------------------------------------------------------------ folder

def test_folder_labels_by_name(tmp_path):
    for rel in ("square/1.png", "circle/2.jpg", "circle/sub/3.png", "dog/4.png"):
        _image(tmp_path / "f" / rel)
    plain = read_annotated(tmp_path / "f")
    assert plain.format == "folder" and plain.class_names == ["circle", "dog", "square"]
    assert [(s.image_id, s.label) for s in plain.samples] == \
        [("circle/2.jpg", 0), ("circle/sub/3.png", 0), ("dog/4.png", 1), ("square/1.png", 2)]
    named = read_annotated(tmp_path / "f", "folder", class_names=CLASS_NAMES)
    assert [s.label for s in named.samples] == [0, 0, 1]       # circle, circle, square
    assert [p.image_id for p in named.problems] == ["dog"]
    check_classes(named, len(CLASS_NAMES), CLASS_NAMES)
    with pytest.raises(NcVizError, match="not trained on this data"):
        check_classes(plain, len(CLASS_NAMES), CLASS_NAMES)      # 'dog' is class 1, not 'square'
    assert all(len(s.boxes) == 0 and s.mask_paths is None for s in plain.samples)


# ------------------------------------------------------------------ checks and scaling

def _dataset(labels, names=None, num=None) -> Dataset:
    return Dataset("x", Path("data"), [Sample(str(i), Path(f"{i}.png"), lab) for i, lab in enumerate(labels)],
                   class_names=names, num_classes=num)


def test_check_classes_refuses_other_classes():
    check_classes(_dataset([0, 2], ["a", "b", "c"], 3), 3, ["a", "b", "c"])
    check_classes(_dataset([0, 2]), 3)
    for data, message in [(_dataset([0, 3]), "label 3"), (_dataset([0], None, 4), "has 4 classes"),
                          (_dataset([1], ["a", "x", "c"]), "class 1 is 'x' in the data but 'b'")]:
        with pytest.raises(NcVizError, match=message):
            check_classes(data, 3, ["a", "b", "c"])


def _reference_resize_bbox(box, image_size, resize_size):
    """wsolevaluation evaluation.py `resize_bbox`, as written there."""
    box_x0, box_y0, box_x1, box_y1 = map(float, box)
    image_w, image_h = map(float, image_size)
    new_image_w, new_image_h = map(float, resize_size)
    return (int(box_x0 * new_image_w / image_w), int(box_y0 * new_image_h / image_h),
            int(box_x1 * new_image_w / image_w), int(box_y1 * new_image_h / image_h))


def test_boxes_at_size_is_the_references_resize_bbox():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(20, 700, 2))
        x0, x1 = np.sort(rng.uniform(0, w, 2))
        y0, y1 = np.sort(rng.uniform(0, h, 2))
        boxes = np.array([[x0, y0, x1, y1], np.floor([x0, y0, x1, y1])])
        for s in (224, 64, 321):
            got = boxes_at_size(boxes, (w, h), s)
            assert got.dtype == np.int64
            assert [tuple(r) for r in got.tolist()] == [_reference_resize_bbox(b, (w, h), (s, s)) for b in boxes]
    assert boxes_at_size([[0, 0, 500, 375]], (500, 375), 224).tolist() == [[0, 0, 224, 224]]
    assert boxes_at_size([[10, 10, 20, 20]], (100, 50), (50, 100)).tolist() == [[5, 20, 10, 40]]
