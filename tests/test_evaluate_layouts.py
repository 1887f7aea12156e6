"""`evaluate` on non-square images in every layout it reads, against numbers worked out by hand.

The models' CAM is replaced by a known map (one at S x S: 1 on the brighter half of the image the
model saw, 0 elsewhere), and their predictions by a known class, so every box, IoU, MaxBoxAcc,
Top-1 Loc and PxAP below is computed by hand from the reference's conventions
(clovaai/wsolevaluation): boxes scaled with `int(x * S / w)`, `int(y * S / h)`; a contour's box
`[x, y, min(x + w, S - 1), min(y + h, S - 1)]`; IoU over inclusive pixels (`+ 1`); masks resized
with OpenCV's nearest neighbour (source index `floor(i * H / S)`); PxAP from the pooled pixels.
Everything else (reading, decoding, resizing, batching, scoring, summarising) is the real path.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nc_viz.pair import ModelPair, load_model_pair
from nc_viz.datasets import read_annotated
from nc_viz.tasks.evaluate import EvalOptions, evaluate_dataset
from nc_viz.tasks.evaluate import score as score_module
from nc_viz.tasks.evaluate.records import read_records

S = 64                                             # the demo pair's input size
HALVES = ("left", "right", "top", "bottom")
PRED_BOX = {                                       # the one contour of a half map, as the reference boxes it
    "left": (0, 0, 32, 63), "right": (32, 0, 63, 63), "top": (0, 0, 63, 32), "bottom": (0, 32, 63, 63)}
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
CLASS_OF_HALF = {"left": 0, "right": 1, "top": 2, "bottom": 3}   # what the fake models predict


@dataclass(frozen=True)
class Img:
    """One image: its size (w, h), the bright region, the box written in the annotation, the label,
    the box at S worked out by hand, and the half the map will light up."""

    name: str
    size: tuple[int, int]
    bright: tuple[int, int, int, int]    # x0, y0, x1, y1 (exclusive ends), original pixels
    box: tuple[int, int, int, int]       # x0, y0, x1, y1 as written (x1 = x0 + w)
    label: int
    box_at_s: tuple[int, int, int, int]  # int(x0 * 64 / w), int(y0 * 64 / h), ...
    half: str


IMAGES = (
    # 80 x 40: x scales by 0.8, y by 1.6
    Img("a", (80, 40), (0, 0, 40, 40), (0, 0, 40, 40), 0, (0, 0, 32, 64), "left"),
    Img("b", (80, 40), (40, 0, 80, 40), (44, 4, 76, 36), 1, (35, 6, 60, 57), "right"),     # 35.2, 6.4, 60.8, 57.6
    # 40 x 80: x scales by 1.6, y by 0.8
    Img("c", (40, 80), (0, 40, 40, 80), (0, 40, 40, 80), 3, (0, 32, 64, 64), "bottom"),
    Img("d", (80, 40), (0, 0, 80, 20), (10, 0, 70, 10), 2, (8, 0, 56, 16), "top"),
    Img("e", (80, 40), (0, 0, 40, 40), (50, 5, 75, 35), 4, (40, 8, 60, 56), "left"),       # box on the dark side
    Img("f", (80, 40), (40, 0, 80, 40), (40, 0, 80, 40), 6, (32, 0, 64, 64), "right"),     # right box, wrong class
)
# IoU of each image's predicted box (PRED_BOX[half]) with its box at S, by hand:
#   a: 33*64 / (33*64 + 33*65 - 33*64) = 2112/2145     b: 26*52 / 2048 = 1352/2048
#   c: 64*32 / 2145 = 2048/2145                         d: 49*17 / 2112 = 833/2112
#   e: 0 (no overlap)                                   f: 32*64 / 2145 = 2048/2145
IOU = {"a": 2112 / 2145, "b": 1352 / 2048, "c": 2048 / 2145, "d": 833 / 2112, "e": 0.0, "f": 2048 / 2145}
# Every threshold gives the same box (the map is 0 or 1), so each curve is flat:
#   V1 (IoU >= 0.5): a, b, c, f -> 4/6;  V2: >= 0.3 a, b, c, d, f (5/6), >= 0.5 (4/6), >= 0.7 a, c, f (3/6)
# Classes: the baseline predicts CLASS_OF_HALF (wrong on e and f); the NC model too, except that it
# says 5 for a bottom half (wrong on c as well).
EXPECTED = {
    "baseline": {"max_box_acc": 400 / 6, "max_box_acc_v2": (500 / 6 + 400 / 6 + 300 / 6) / 3,
                 "gt_known_loc": 400 / 6, "top1_loc": 300 / 6, "accuracy": 4 / 6},    # top-1: a, b, c
    "nc": {"max_box_acc": 400 / 6, "max_box_acc_v2": (500 / 6 + 400 / 6 + 300 / 6) / 3,
           "gt_known_loc": 400 / 6, "top1_loc": 200 / 6, "accuracy": 3 / 6},          # top-1: a, b
}


def iou_by_hand(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """IoU of two inclusive boxes, the reference's `calculate_multiple_iou` written out."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return iw * ih / (area(a) + area(b) - iw * ih)


def test_the_hand_numbers_above_are_consistent():
    for img in IMAGES:
        w, h = img.size
        assert img.box_at_s == (int(img.box[0] * S / w), int(img.box[1] * S / h), int(img.box[2] * S / w),
                                int(img.box[3] * S / h)), img.name
        assert iou_by_hand(PRED_BOX[img.half], img.box_at_s) == pytest.approx(IOU[img.name]), img.name


# ----------------------------------------------------------------------------- the known maps


def half_map(half: str) -> torch.Tensor:
    m = torch.zeros(S, S)
    if half == "left":
        m[:, :S // 2] = 1
    elif half == "right":
        m[:, S // 2:] = 1
    elif half == "top":
        m[:S // 2] = 1
    else:
        m[S // 2:] = 1
    return m


def brighter_half(x: torch.Tensor) -> str:
    """The half of one normalised (3, S, S) input with the highest mean."""
    g = x.mean(0)
    means = [g[:, :S // 2].mean(), g[:, S // 2:].mean(), g[:S // 2].mean(), g[S // 2:].mean()]
    return HALVES[int(torch.stack(means).argmax())]


class KnownCams:
    """Stands in for `compute_cams` inside `evaluate`: the real forward pass (features, neuron
    maps), then the map and the logits replaced by known ones, chosen per model."""

    def __init__(self, real, maps: dict[int, str], predictions: dict[int, str]) -> None:
        self.real, self.maps, self.predictions = real, maps, predictions

    def __call__(self, model, x, target=None, **kwargs):
        out = self.real(model, x, target, **kwargs)
        halves = [brighter_half(xi) for xi in x.cpu()]
        shown = [OPPOSITE[h] if self.maps[id(model)] == "opposite" else h for h in halves]
        rule = self.predictions[id(model)]
        if rule == "half":
            classes = [CLASS_OF_HALF[h] for h in halves]
        elif rule == "half_but_bottom":
            classes = [5 if h == "bottom" else CLASS_OF_HALF[h] for h in halves]
        else:                                          # "target": always right
            classes = out.target.tolist()
        logits = torch.full_like(out.logits, -5.0)
        logits[torch.arange(len(classes)), torch.tensor(classes)] = 5.0
        return dataclasses.replace(out, cam=torch.stack([half_map(h) for h in shown]).to(out.cam), logits=logits)


@pytest.fixture(scope="module")
def demo_pair() -> ModelPair:
    return load_model_pair(device="cpu")


@pytest.fixture
def known_cams(monkeypatch, demo_pair):
    fake = KnownCams(score_module.compute_cams,
                     {id(demo_pair.baseline.model): "same", id(demo_pair.roles["nc"].model): "same"},
                     {id(demo_pair.baseline.model): "half", id(demo_pair.roles["nc"].model): "half_but_bottom"})
    monkeypatch.setattr(score_module, "compute_cams", fake)
    return fake


# ----------------------------------------------------------------------------- the layouts, written by hand


NAMES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart", "arrow")  # the demo pair's


def _image(path: Path, img: Img) -> None:
    w, h = img.size
    pixels = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = img.bright
    pixels[y0:y1, x0:x1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_wsol(root: Path, sizes: bool = True) -> Path:
    """wsolevaluation metadata (`image_ids.txt`, ...) in root/wsol, images in root/images."""
    for img in IMAGES:
        _image(root / "images" / f"{img.name}.png", img)
    ids = [f"images/{img.name}.png" for img in IMAGES]
    meta = root / "wsol"
    _write(meta / "image_ids.txt", ids)
    _write(meta / "class_labels.txt", [f"{i},{img.label}" for i, img in zip(ids, IMAGES)])
    if sizes:
        _write(meta / "image_sizes.txt", [f"{i},{img.size[0]},{img.size[1]}" for i, img in zip(ids, IMAGES)])
    _write(meta / "localization.txt", [f"{i},{','.join(map(str, img.box))}" for i, img in zip(ids, IMAGES)])
    return meta


def write_imagenet(root: Path) -> Path:
    """One Pascal-VOC XML per image; image e also names an object of another class where its map
    points (the left half): that box is not e's and must not count."""
    for img in IMAGES:
        _image(root / "images" / f"{img.name}.png", img)
        objects = [(NAMES[img.label], img.box)] + ([(NAMES[0], (0, 0, 40, 40))] if img.name == "e" else [])
        body = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                       f"<ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
        _write(root / "xml" / f"{img.name}.xml", [f"<annotation><filename>{img.name}.png</filename><size>"
                                                  f"<width>{img.size[0]}</width><height>{img.size[1]}</height>"
                                                  f"<depth>3</depth></size>{body}</annotation>"])
    return root / "xml"


def write_cub(root: Path) -> Path:
    """CUB_200_2011 files: `id x y w h` boxes, 1-based classes, all images in the test split."""
    cub = root / "cub"
    for img in IMAGES:
        _image(cub / "images" / f"{img.name}.png", img)
    ids = range(1, len(IMAGES) + 1)
    _write(cub / "images.txt", [f"{i} {img.name}.png" for i, img in zip(ids, IMAGES)])
    _write(cub / "image_class_labels.txt", [f"{i} {img.label + 1}" for i, img in zip(ids, IMAGES)])
    _write(cub / "bounding_boxes.txt", [f"{i} {b[0]} {b[1]} {b[2] - b[0]} {b[3] - b[1]}"
                                        for i, b in zip(ids, (img.box for img in IMAGES))])
    _write(cub / "train_test_split.txt", [f"{i} 0" for i in ids])
    _write(cub / "classes.txt", [f"{i + 1} {n}" for i, n in enumerate(NAMES)])
    return cub


def write_ncviz(root: Path, images: tuple[Img, ...] = IMAGES) -> Path:
    """labels.csv, images/ and instance-id masks/ (the box is the mask's extent, x1 = last + 1)."""
    data = root / "ncviz"
    rows = ["file,label,class_name,instances"]
    for img in images:
        _image(data / "images" / f"{img.name}.png", img)
        w, h = img.size
        ids = np.zeros((h, w), np.uint8)
        x0, y0, x1, y1 = img.box
        ids[y0:y1, x0:x1] = 1
        (data / "masks").mkdir(exist_ok=True)
        Image.fromarray(ids).save(data / "masks" / f"{img.name}.png")
        rows.append(f"images/{img.name}.png,{img.label},{NAMES[img.label]},1")
    _write(data / "labels.csv", rows)
    _write(data / "classes.txt", list(NAMES))
    return data


def write_folder(root: Path) -> Path:
    for img in IMAGES:
        _image(root / "folder" / NAMES[img.label] / f"{img.name}.png", img)
    return root / "folder"


LAYOUTS = {
    "wsol": lambda root: (write_wsol(root), {}),
    "wsol-no-sizes": lambda root: (write_wsol(root, sizes=False), {}),
    "imagenet": lambda root: (write_imagenet(root), {"images": root / "images", "class_names": NAMES}),
    "cub": lambda root: (write_cub(root), {}),
    "ncviz": lambda root: (write_ncviz(root), {}),
}
OPTIONS = EvalOptions(bootstrap=0, workers=0, score_threads=0, batch_size=4)   # 6 images: batches of 4 and 2


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_non_square_boxes_and_box_numbers_by_hand_in_every_layout(layout, tmp_path, demo_pair, known_cams):
    path, extra = LAYOUTS[layout](tmp_path)
    dataset = read_annotated(path, layout.split("-")[0], **extra)
    assert not dataset.problems and [s.path.stem for s in dataset.samples] == [img.name for img in IMAGES]
    records = tmp_path / "records.csv"
    evaluation = evaluate_dataset(demo_pair, dataset, OPTIONS, records_path=records)
    assert evaluation.images == len(IMAGES) and not evaluation.failed
    for role, expected in EXPECTED.items():
        got = {key: evaluation.results[role][key] for key in expected}
        assert got == pytest.approx(expected, abs=1e-9), (layout, role)
        assert evaluation.results[role]["best_tau_v1"] == 0.0      # flat curves: the first tau is the best
    rows = read_records(records)
    for img in IMAGES:
        mine = {r["role"]: r for r in rows if Path(str(r["image_id"])).stem == img.name}
        for role in ("baseline", "nc"):
            assert mine[role]["iou_tau_0.2"] == pytest.approx(IOU[img.name], abs=1e-6), (layout, img.name)
            assert mine[role]["gt_known_loc"] == float(IOU[img.name] >= 0.5)


def test_decoded_boxes_are_scaled_by_width_and_height(tmp_path, demo_pair):
    """The boxes `evaluate` scores, straight from its decoding step (image size from the metadata
    and from the file header)."""
    from dataclasses import replace

    from nc_viz.tasks.evaluate import EvalImages

    preprocess = replace(demo_pair.preprocess, center_crop=False)
    for layout in ("wsol", "wsol-no-sizes", "cub"):
        root = tmp_path / layout
        path, extra = LAYOUTS[layout](root)
        dataset = read_annotated(path, layout.split("-")[0], **extra)
        items = EvalImages(dataset.samples, range(len(IMAGES)), preprocess)
        for i, img in enumerate(IMAGES):
            item = items[i]
            assert item.error is None and tuple(item.x.shape) == (3, S, S)
            assert item.boxes.tolist() == [list(img.box_at_s)], (layout, img.name)


def test_folder_layout_of_non_square_images_scores_the_accuracy(tmp_path, demo_pair, known_cams):
    dataset = read_annotated(write_folder(tmp_path), "folder", class_names=NAMES)
    evaluation = evaluate_dataset(demo_pair, dataset, OPTIONS)
    assert evaluation.images == len(IMAGES) and "max_box_acc" not in evaluation.results["baseline"]
    assert evaluation.results["baseline"]["accuracy"] == pytest.approx(4 / 6)
    assert evaluation.results["nc"]["accuracy"] == pytest.approx(3 / 6)


# ----------------------------------------------------------------------------- masks with an ignore region (PxAP)


MASKED = (   # name, size (w, h), bright half, mask region, ignore region (None: no ignore file), as x0, y0, x1, y1
    ("m", (80, 40), (0, 0, 40, 40), (20, 10, 50, 40), (0, 0, 25, 40)),
    ("n", (40, 80), (0, 0, 40, 40), (0, 20, 40, 60), None),
)


def _at_s(region: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """A region's pixels at S: OpenCV's nearest neighbour takes source pixel floor(i * H / S), so
    with these sizes a region [x0, x1) lands on [x0 * S / w, x1 * S / w) exactly (the same for y)."""
    w, h = size
    x0, y0, x1, y1 = region
    out = np.zeros((S, S), bool)
    out[y0 * S // h:y1 * S // h, x0 * S // w:x1 * S // w] = True
    return out


def _pxap_by_hand() -> tuple[float, float]:
    """PxAP (percent) of the two images pooled, with and without the ignore region.

    The score map takes two values (1 on the bright half, 0 elsewhere), so the reference's
    precision-recall sum has two steps: AP = p1 * r1 + p0 * (1 - r1), p1 and r1 at the pixels
    scored 1, p0 over all pixels counted."""
    out = []
    for use_ignore in (True, False):
        tp1 = fp1 = positives = negatives = 0
        for _, size, bright, region, ignore in MASKED:
            fg, high = _at_s(region, size), _at_s(bright, size)
            counted = ~fg
            if use_ignore and ignore is not None:
                counted &= ~_at_s(ignore, size)      # the ignore region minus the foreground
            tp1 += int((fg & high).sum())
            fp1 += int((counted & high).sum())
            positives += int(fg.sum())
            negatives += int(counted.sum())
        p1, r1, p0 = tp1 / (tp1 + fp1), tp1 / positives, positives / (positives + negatives)
        out.append(100 * (p1 * r1 + p0 * (1 - r1)))
    return out[0], out[1]


def test_pxap_by_hand_numbers():
    with_ignore, without = _pxap_by_hand()
    # m: 1152 positives, 768 of them and 192 counted negatives on the bright half, 1856 negatives counted
    # n: 2048 positives, 1024 of them and 1024 negatives on the bright half, 2048 negatives
    p1, r1, p0 = 1792 / (1792 + 1216), 1792 / 3200, 3200 / (3200 + 3904)
    assert with_ignore == pytest.approx(100 * (p1 * r1 + p0 * (1 - r1)))
    assert without == pytest.approx(100 * (1792 / 4096 * 1792 / 3200 + 3200 / 8192 * (1 - 1792 / 3200)))


def test_pxap_through_evaluate_leaves_the_ignore_region_out(tmp_path, demo_pair, known_cams):
    """wsolevaluation's OpenImages layout: `path,mask,ignore` lines, masks of non-square images."""
    ids = []
    lines = []
    for name, size, bright, region, ignore in MASKED:
        _image(tmp_path / "images" / f"{name}.png", Img(name, size, bright, bright, 0, (0, 0, 0, 0), "left"))
        for suffix, rect in (("mask", region), ("ignore", ignore)):
            if rect is not None:
                pixels = np.zeros(size[::-1], np.uint8)
                pixels[rect[1]:rect[3], rect[0]:rect[2]] = 255
                Image.fromarray(pixels).save(tmp_path / "images" / f"{name}_{suffix}.png")
        ids.append(f"images/{name}.png")
        lines.append(f"images/{name}.png,images/{name}_mask.png," + (f"images/{name}_ignore.png" if ignore else ""))
    meta = tmp_path / "wsol"
    _write(meta / "image_ids.txt", ids)
    _write(meta / "class_labels.txt", [f"{i},0" for i in ids])
    _write(meta / "localization.txt", lines)
    dataset = read_annotated(meta, "wsol")
    assert not dataset.problems and dataset.samples[0].ignore_path is not None
    evaluation = evaluate_dataset(demo_pair, dataset, dataclasses.replace(OPTIONS, bootstrap=10))
    with_ignore, without = _pxap_by_hand()
    assert with_ignore != pytest.approx(without)
    for role in ("baseline", "nc"):
        assert evaluation.results[role]["pxap"] == pytest.approx(with_ignore, abs=1e-9)
    interval = evaluation.intervals["pxap"]
    assert interval.base == interval.nc == pytest.approx(with_ignore, abs=1e-9) and interval.n_images == 2


# ----------------------------------------------------------------------------- properties of the paired comparison


TWICE = IMAGES + tuple(dataclasses.replace(img, name=img.name + "2") for img in IMAGES)


def test_the_same_model_twice_gives_every_interval_exactly_zero(tmp_path, demo_pair):
    """Baseline and NC the same network: every per-image value, count and histogram is the same
    for both, so every paired resample differs by exactly 0 (an unpaired path would not)."""
    same = ModelPair({"baseline": demo_pair.baseline, "nc": demo_pair.baseline})
    dataset = read_annotated(write_ncviz(tmp_path, TWICE), "ncviz")
    evaluation = evaluate_dataset(same, dataset, dataclasses.replace(OPTIONS, bootstrap=30))
    assert {"max_box_acc", "max_box_acc_v2", "pxap", "accuracy", "energy", "gt_known_loc"} <= set(evaluation.intervals)
    for name, interval in evaluation.intervals.items():
        assert (interval.diff, interval.low, interval.high) == (0.0, 0.0, 0.0), name
        assert not interval.excludes_zero and interval.base == interval.nc, name


def test_swapping_baseline_and_nc_negates_every_difference_and_keeps_every_mark(tmp_path, demo_pair, monkeypatch):
    """The baseline's maps are right and the NC model's point at the other half (worse boxes), the
    NC model's classes are always right (better accuracy): marks of both signs, then swapped."""
    base, nc = (loaded.model for loaded in demo_pair.roles.values())
    monkeypatch.setattr(score_module, "compute_cams", KnownCams(
        score_module.compute_cams, {id(base): "same", id(nc): "opposite"}, {id(base): "half", id(nc): "target"}))
    dataset = read_annotated(write_ncviz(tmp_path, TWICE), "ncviz")
    options = dataclasses.replace(OPTIONS, bootstrap=40)
    forward = evaluate_dataset(demo_pair, dataset, options)
    swapped_pair = ModelPair({"baseline": demo_pair.roles["nc"], "nc": demo_pair.baseline})
    swapped = evaluate_dataset(swapped_pair, dataset, options)
    assert set(forward.intervals) == set(swapped.intervals)
    assert forward.intervals["max_box_acc"].high < 0 and forward.intervals["pxap"].high < 0   # NC worse, marked
    assert forward.intervals["accuracy"].low > 0                                               # NC better, marked
    for name, one in forward.intervals.items():
        two = swapped.intervals[name]
        assert (two.diff, two.low, two.high) == pytest.approx((-one.diff, -one.high, -one.low), abs=1e-9), name
        assert (two.base, two.nc) == pytest.approx((one.nc, one.base), abs=1e-9), name
        assert two.excludes_zero == one.excludes_zero, name
