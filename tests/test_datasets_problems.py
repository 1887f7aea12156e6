"""Annotations that used to be read silently wrong: instance ids far above their count, labels
missing from some images only, byte order marks, duplicate ids and paths, sizes that disagree
with the files. Each is now bounded, counted as a problem (fatal with `strict`) or normalised."""
from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.cli import main
from nc_viz.models.preprocessing import Preprocess
from nc_viz.datasets import Sample, read_annotated
from nc_viz.datasets.masks import instance_planes, read_ignore_mask, read_instance_masks
from nc_viz.core.errors import NcVizError
from nc_viz.tasks.evaluate import EvalOptions
from nc_viz.tasks.evaluate.decode import EvalImages
from nc_viz.tasks.evaluate.score import measure_image
from conftest import black_image as _image, copy_data, write_file as _write


def _reasons(dataset) -> list[str]:
    return sorted(p.reason.split(":")[0] for p in dataset.problems)


# ------------------------------------------------------------------ instance ids: bounded by the distinct ids

def _id_mask(path: Path, values: tuple[int, int], size: int = 32) -> Path:
    """A 16-bit instance-id mask: a square of `values[0]` and a bar of `values[1]` on 0."""
    ids = np.zeros((size, size), np.uint16)
    ids[4:14, 3:12] = values[0]
    ids[20:30, 5:28] = values[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids).save(path)
    assert Image.open(path).mode == "I;16"
    return path


def test_a_large_instance_id_costs_what_a_small_one_does_and_scores_the_same(tmp_path):
    """Ids {0, 1, 65535} are two instances, exactly as {0, 1, 2}: the same planes, the same
    numbers, and no (65535, H, W) array on the way (65535 x 32 x 32 bools are 67 MB)."""
    small = _id_mask(tmp_path / "small.png", (1, 2))
    large = _id_mask(tmp_path / "large.png", (1, 65535))
    samples = [Sample(p.stem, _image(tmp_path / f"{p.stem}.jpg", 32, 32), 0, mask_paths=(p,),
                      mask_encoding="instance_ids") for p in (small, large)]
    tracemalloc.start()
    try:
        planes = read_instance_masks(samples[1])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200_000, peak                             # a few copies of 32 x 32, not 67 MB
    expected = np.zeros((2, 32, 32), bool)                  # built here, not by the code under test
    expected[0, 4:14, 3:12] = True
    expected[1, 20:30, 5:28] = True
    assert np.array_equal(planes, expected) and np.array_equal(read_instance_masks(samples[0]), expected)

    decode = EvalImages(samples, [0, 1], Preprocess(input_size=24, center_crop=False))
    items = [decode[0], decode[1]]
    assert all(item.error is None for item in items)
    cam = torch.from_numpy(np.random.default_rng(0).random((6, 6)).astype(np.float32))
    small_numbers, large_numbers = (measure_image(cam, item, True, 24, EvalOptions()) for item in items)
    assert small_numbers.numbers == large_numbers.numbers and "coverage_multi" in small_numbers.numbers
    assert np.array_equal(small_numbers.histograms[0], large_numbers.histograms[0])


def test_ordinary_instance_ids_give_the_planes_they_always_gave(tmp_path):
    ids = np.zeros((20, 30), np.uint8)
    for i in range(1, 5):
        ids[i * 4:i * 4 + 3, i * 5:i * 5 + 4] = i
    path = tmp_path / "m.png"
    Image.fromarray(ids).save(path)
    sample = Sample("m", path, 0, mask_paths=(path,), mask_encoding="instance_ids")
    assert np.array_equal(read_instance_masks(sample), ids[None] == np.arange(1, 5)[:, None, None])
    # a value no pixel holds is no instance; a negative value (32-bit masks) neither, as before
    gaps = np.array([[0, 3], [1, -7]], np.int32)
    assert np.array_equal(instance_planes(gaps), [[[False, False], [True, False]], [[False, True], [False, False]]])


def test_an_instance_count_far_above_the_masks_ids_is_one_problem_quickly(tmp_path):
    """labels.csv claiming 10**6 instances of a 2-instance mask: one problem, no million loops."""
    data = tmp_path / "d"
    _image(data / "images" / "a.png", 32, 32)
    _id_mask(data / "masks" / "a.png", (1, 2))
    _write(data / "labels.csv", "file,label,class_name,instances\nimages/a.png,0,circle,1000000\n")
    start = time.perf_counter()
    dataset = read_annotated(data, "ncviz")
    assert time.perf_counter() - start < 5
    assert len(dataset) == 1 and len(dataset.samples[0].boxes) == 2
    (problem,) = dataset.problems
    assert "instances 3, 4, 5, 6, 7, ... (999998 in all) have no pixel in a.png" in problem.reason


# ------------------------------------------------------------------ labels: all or nothing

def _wsol(tmp_path: Path, labels: list[int], ids_text: str | None = None, bom: bool = False) -> Path:
    meta, data = tmp_path / "metadata", tmp_path / "dataset"
    names = [f"val/{c}.jpg" for c in "abc"[:len(labels)]]
    for name in names:
        _image(data / name)
    _write(meta / "image_ids.txt", ids_text if ids_text is not None else "".join(n + "\n" for n in names), bom)
    _write(meta / "class_labels.txt", "".join(f"{n},{lab}\n" for n, lab in zip(names, labels)))
    _write(meta / "image_sizes.txt", "".join(f"{n},50,40\n" for n in names))
    _write(meta / "localization.txt", "".join(f"{n},1,2,30,20\n" for n in names))
    return meta


def test_one_missing_label_among_labelled_images_is_a_problem_not_a_switch(tmp_path):
    from nc_viz.tasks.evaluate.workflow import unlabelled_explains_predicted

    meta = _wsol(tmp_path, [0, -1, 2])
    data = read_annotated(meta, images=tmp_path / "dataset")
    assert [s.image_id for s in data.samples] == ["val/a.jpg", "val/c.jpg"]
    assert _reasons(data) == ["no class label (-1) in a data set whose other images have one"]
    assert unlabelled_explains_predicted(data, EvalOptions()).map_class == "true"
    with pytest.raises(NcVizError, match=r"val/b.jpg: no class label \(-1\).*\(strict\)$"):
        read_annotated(meta, images=tmp_path / "dataset", strict=True)
    # no label at all: the maps explain each model's predicted class, as for `images`
    unlabelled = read_annotated(_wsol(tmp_path / "none", [-1, -1, -1]), images=tmp_path / "none" / "dataset")
    assert len(unlabelled) == 3 and not unlabelled.problems
    assert unlabelled_explains_predicted(unlabelled, EvalOptions()).map_class == "predicted"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("problems-data") / "d"
    assert main(["make-data", str(data), "--count", "3", "--seed", "2"]) == 0
    return data


def test_evaluate_counts_an_unlabelled_image_among_labelled_ones(made, tmp_path, capsys):
    made = copy_data(made, tmp_path)
    labels = made / "wsol" / "class_labels.txt"
    lines = labels.read_text().splitlines()
    name = lines[1].split(",")[0]
    labels.write_text("\n".join([lines[0], f"{name},-1", *lines[2:]]) + "\n")
    assert main(["evaluate", str(made / "wsol"), "--bootstrap", "0", "--workers", "0", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "2 images, 1 annotation problems" in err and "predicted class" not in err
    assert main(["evaluate", str(made / "wsol"), "--strict", "--bootstrap", "0", "--workers", "0",
                 "--device", "cpu"]) != 0
    assert "no class label (-1)" in capsys.readouterr().err


# ------------------------------------------------------------------ byte order marks, duplicates, ./paths

def test_a_byte_order_mark_loses_no_image(tmp_path):
    meta = _wsol(tmp_path, [0, 1, 2], bom=True)
    assert len(read_annotated(meta, images=tmp_path / "dataset", strict=True)) == 3
    data = tmp_path / "n"
    _image(data / "images" / "a.png", 32, 32)
    _id_mask(data / "masks" / "a.png", (1, 2))
    _write(data / "labels.csv", "file,label,class_name,instances\nimages/a.png,0,circle,2\n", bom=True)
    assert len(read_annotated(data, "ncviz", strict=True)) == 1
    cub = tmp_path / "cub"
    _image(cub / "images" / "a.jpg")
    _write(cub / "images.txt", "1 a.jpg\n", bom=True)
    _write(cub / "image_class_labels.txt", "1 1\n", bom=True)
    _write(cub / "train_test_split.txt", "1 0\n", bom=True)
    assert len(read_annotated(cub, "cub", strict=True)) == 1


def test_wsol_duplicates_and_dot_paths_are_counted_once(tmp_path):
    meta = _wsol(tmp_path, [0, 1], ids_text="val/a.jpg\n./val/b.jpg\nval/b.jpg\nval//a.jpg\n")
    with open(meta / "class_labels.txt", "a") as f:
        f.write("./val/a.jpg,3\n")                                  # a second label: the first is used
    with open(meta / "image_sizes.txt", "a") as f:
        f.write("val/b.jpg,60,40\n")                                # a second size: the first is used
    data = read_annotated(meta, images=tmp_path / "dataset")
    assert [(s.image_id, s.label, s.size) for s in data.samples] == [("val/a.jpg", 0, (50, 40)),
                                                                     ("val/b.jpg", 1, (50, 40))]
    assert _reasons(data) == ["listed twice"] * 4
    assert any("class_labels.txt, line 3" in p.where and "line 1's is used" in p.reason for p in data.problems)
    with pytest.raises(NcVizError, match=r"image_ids.txt, line 3: val/b.jpg: listed twice: line 2's is used"):
        read_annotated(meta, images=tmp_path / "dataset", strict=True)


def test_cub_duplicate_ids_and_paths_are_problems(tmp_path):
    root = tmp_path / "cub"
    for name in ("a.jpg", "b.jpg"):
        _image(root / "images" / name)
    _write(root / "images.txt", "1 a.jpg\n2 b.jpg\n1 b.jpg\n3 ./a.jpg\n")
    _write(root / "image_class_labels.txt", "1 1\n2 2\n2 1\n3 1\n")
    _write(root / "train_test_split.txt", "1 0\n2 0\n3 0\n")
    data = read_annotated(root, "cub")
    assert [(s.image_id, s.label) for s in data.samples] == [("a.jpg", 0), ("b.jpg", 1)]
    assert _reasons(data) == ["listed twice"] * 3               # id 1 twice, id 2's label twice, a.jpg twice
    with pytest.raises(NcVizError, match=r"images.txt, line 3: 1: listed twice"):
        read_annotated(root, "cub", strict=True)


def test_ncviz_labels_listing_one_image_twice_score_it_once(made, tmp_path):
    made = copy_data(made, tmp_path)
    labels = made / "labels.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([*lines, "./" + lines[1]]) + "\n")
    data = read_annotated(made, "ncviz")
    assert len(data) == 3 and _reasons(data) == ["listed twice"]


# ------------------------------------------------------------------ sizes: the file is trusted

def test_image_sizes_that_disagree_with_the_file_are_a_problem_naming_it(tmp_path):
    meta = _wsol(tmp_path, [0, 1])
    _write(meta / "image_sizes.txt", "val/a.jpg,50,40\nval/b.jpg,100,80\n")   # b.jpg is 50 x 40
    data = read_annotated(meta, images=tmp_path / "dataset")
    assert [s.image_id for s in data.samples] == ["val/a.jpg"]
    (problem,) = data.problems
    assert str(problem) == (f"{tmp_path / 'dataset' / 'val' / 'b.jpg'}: val/b.jpg: "
                            "image_sizes.txt says 100x80, the file is 50x40")
    with pytest.raises(NcVizError, match="image_sizes.txt says 100x80"):
        read_annotated(meta, images=tmp_path / "dataset", strict=True)


def test_imagenet_size_that_disagrees_with_the_file_is_a_problem(tmp_path):
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox>"
    for name, (w, h) in {"x1": (50, 40), "x2": (100, 80)}.items():
        _write(tmp_path / f"{name}.xml", f"<annotation><size><width>{w}</width><height>{h}</height></size>"
                                         f"<object><name>n01440764</name>{box}</object></annotation>")
        _image(tmp_path / f"{name}.JPEG")
    data = read_annotated(tmp_path, "imagenet")
    assert [s.image_id for s in data.samples] == ["x1.JPEG"]
    assert [p.reason for p in data.problems] == ["<size> says 100x80, the file is 50x40"]


def _masked(tmp_path: Path, mask_size: tuple[int, int], ignore_size: tuple[int, int]) -> tuple[Path, Path]:
    meta, data = tmp_path / "meta", tmp_path / "images"
    _image(data / "x.jpg")
    for name, (w, h) in {"m.png": mask_size, "ignore.png": ignore_size}.items():
        plane = np.zeros((h, w), np.uint8)
        plane[:, : w // 2] = 255
        Image.fromarray(plane).save(data / name)
    _write(meta / "image_ids.txt", "x.jpg\n")
    _write(meta / "class_labels.txt", "x.jpg,1\n")
    _write(meta / "localization.txt", "x.jpg,m.png,ignore.png\n")
    return meta, data


def test_a_mask_of_another_size_is_a_problem_naming_the_mask(tmp_path):
    meta, data = _masked(tmp_path, (25, 20), (50, 40))
    dataset = read_annotated(meta, "wsol", images=data)
    assert len(dataset) == 0
    assert [str(p) for p in dataset.problems] == [f"{data / 'm.png'}: x.jpg: mask is 25x20, image is 50x40"]


def test_an_ignore_mask_of_another_size_is_a_problem_naming_it(tmp_path):
    meta, data = _masked(tmp_path, (50, 40), (30, 20))
    dataset = read_annotated(meta, "wsol", images=data)
    assert len(dataset) == 0
    assert [str(p) for p in dataset.problems] == [f"{data / 'ignore.png'}: x.jpg: ignore mask is 30x20, image is 50x40"]
    with pytest.raises(NcVizError, match="ignore.png: x.jpg: ignore mask is 30x20, image is 50x40"):
        read_annotated(meta, "wsol", images=data, strict=True)
    # a Sample built by hand still gets a line naming the file, not numpy's broadcast message
    sample = Sample("x.jpg", data / "x.jpg", 1, mask_paths=(data / "m.png",), ignore_path=data / "ignore.png")
    with pytest.raises(NcVizError, match=r"ignore.png: ignore mask is 30x20, the masks are 50x40"):
        read_ignore_mask(sample)


def test_ncviz_mask_of_another_size_than_its_image_is_a_problem(made, tmp_path):
    data = copy_data(made, tmp_path)
    image = sorted((data / "images").iterdir())[0]
    Image.open(image).resize((32, 32)).save(image)
    dataset = read_annotated(data, "ncviz")
    assert len(dataset) == 2 and ["mask is 64x64, image is 32x32"] == [p.reason for p in dataset.problems]
