"""A procedural, seeded shapes data set for classification and localisation (numpy + Pillow).

Every image holds one class: one instance, or (in `multi_share` of the images) 2 to 4 instances
of that class, each with its own exact pixel mask. Shapes differ in outline, not in colour: the
colour, scale, rotation, aspect and shading of each instance are drawn independently of the
class. Backgrounds are smooth colour gradients with low-frequency blotches, pixel noise, thin
lines, scribbles and specks (none of them a class shape, all drawn below the objects).

`generate_sample(index, seed, size)` depends on `(seed, index, size)` only, so any subset can be
generated in any order, in parallel, in DataLoader workers. No torch here at import time.

Rendering: each instance is rasterised at 4x resolution on a small canvas around it; its
coverage (the 4x4 box mean) is the alpha with which it is blended in, and its mask is
`coverage >= 0.5`, so the mask is exactly the set of pixels that the shape covers at least half.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image, ImageDraw

from ..core.io import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_NAMES",
    "MULTI_SHARE",
    "LABELS_HEADER",
    "Sample",
    "SyntheticShapes",
    "generate_sample",
    "instance_map",
    "write_dataset",
]

MULTI_SHARE = 0.3          # default share of images with 2-4 instances
MAX_INSTANCES = 4
LABELS_HEADER = ("file", "label", "class_name", "instances")
_SUPER = 4                 # supersampling factor of the object rasteriser
_MIN_CONTRAST = 110.0      # wanted RGB distance between an object and its local background
_MIN_LUMA_CONTRAST = 70.0  # and wanted lightness difference (0-255 luma)
# Circumradius of an instance as a fraction of the image side: one instance, or several.
_RADIUS_SINGLE = (0.12, 0.22)   # 64 px: 7.7-14 px radius, objects ~15-28 px across
_RADIUS_MULTI = (0.10, 0.16)    # 64 px: 6.4-10.2 px radius, ~13-20 px across


# --------------------------------------------------------------------------------------------
# Shapes: lists of (polygon in unit coordinates, fill 1 = add / 0 = cut), inside the unit disc.

def _circle_pts(r: float, n: int = 64, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _regular(n: int, r: float, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2.0 * np.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.42) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(arm: float = 0.95, half: float = 0.3) -> np.ndarray:
    a, h = arm, half
    return np.array([(-h, -a), (h, -a), (h, -h), (a, -h), (a, h), (h, h),
                     (h, a), (-h, a), (-h, h), (-a, h), (-a, -h), (-h, -h)], dtype=float)


def _heart(n: int = 72) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(0) + pts.min(0)) / 2.0
    return pts / np.hypot(pts[:, 0], pts[:, 1]).max() * 0.98


def _arrow() -> np.ndarray:
    return np.array([(-0.95, -0.2), (0.15, -0.2), (0.15, -0.62), (0.95, 0.0),
                     (0.15, 0.62), (0.15, 0.2), (-0.95, 0.2)], dtype=float)


_SHAPES: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_circle_pts(0.9), 1)],
    "square": [(_regular(4, 0.97, np.pi / 4), 1)],
    "triangle": [(_regular(3, 1.0), 1)],
    "star": [(_star(), 1)],
    "cross": [(_cross(), 1)],
    "ring": [(_circle_pts(0.95), 1), (_circle_pts(0.55), 0)],
    "crescent": [(_circle_pts(0.92), 1), (_circle_pts(0.78, cx=0.42, cy=-0.1), 0)],
    "heart": [(_heart(), 1)],
    "arrow": [(_arrow(), 1)],
}

CLASS_NAMES: tuple[str, ...] = tuple(_SHAPES)


# --------------------------------------------------------------------------------------------
# Samples

@dataclass
class Sample:
    """One generated image with its label and one mask and box per instance.

    `masks` is `(n_instances, H, W)` bool, disjoint; `boxes` are `(x0, y0, x1, y1)` pixel
    bounds of each mask with exclusive `x1, y1`; `radii` the circumradius of each instance in
    pixels (its scale).
    """

    image: np.ndarray
    label: int
    masks: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    radii: tuple[float, ...] = field(default=())

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]

    @property
    def instances(self) -> int:
        return int(self.masks.shape[0])


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float HxWx3: a two-colour linear gradient plus low-frequency colour blotches."""
    c0 = rng.uniform(25.0, 230.0, 3)
    c1 = np.clip(c0 + rng.normal(0.0, 55.0, 3), 0.0, 255.0)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    coords = (np.arange(size) + 0.5) / size - 0.5
    proj = np.cos(theta) * coords[None, :] + np.sin(theta) * coords[:, None]
    t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-9)
    img = c0 + (c1 - c0) * t[:, :, None]
    grid = int(rng.integers(3, 7))
    amp = rng.uniform(8.0, 30.0)
    coarse = rng.normal(0.0, amp, (grid, grid, 3)).astype(np.float32)
    for ch in range(3):
        band = Image.fromarray(coarse[:, :, ch], mode="F").resize((size, size), Image.BICUBIC)
        img[:, :, ch] += np.asarray(band, dtype=np.float64)
    return img


def _distractors(rng: np.random.Generator, img: np.ndarray, size: int) -> np.ndarray:
    """Thin lines, scribbles and specks: clutter that is no class shape."""
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    mean = img.reshape(-1, 3).mean(0)

    def colour() -> tuple[int, int, int]:
        if rng.random() < 0.7:   # mostly close to the background: texture, not objects
            c = mean + rng.normal(0.0, 45.0, 3)
        else:
            c = rng.uniform(0.0, 255.0, 3)
        return tuple(int(v) for v in np.clip(c, 0, 255))

    for _ in range(int(rng.integers(2, 7))):          # straight lines across
        x0, y0, x1, y1 = rng.uniform(-0.1 * size, 1.1 * size, 4)
        draw.line([(x0, y0), (x1, y1)], fill=colour(), width=1 if rng.random() < 0.7 else 2)
    for _ in range(int(rng.integers(1, 4))):          # open scribbles (random walks)
        n = int(rng.integers(3, 7))
        start = rng.uniform(0.0, size, 2)
        steps = rng.normal(0.0, 0.12 * size, (n, 2))
        pts = np.vstack([start, start + np.cumsum(steps, axis=0)])
        draw.line([tuple(p) for p in pts], fill=colour(), width=1)
    out = np.asarray(canvas, dtype=np.float64).copy()
    for _ in range(int(rng.integers(5, 20))):         # soft round specks, ~2-4 px across
        x, y = rng.uniform(0.0, size, 2)
        sigma = rng.uniform(0.5, 1.1)
        c = np.array(colour(), dtype=np.float64)
        x0, y0 = max(0, int(x) - 3), max(0, int(y) - 3)
        x1, y1 = min(size, int(x) + 4), min(size, int(y) + 4)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        a = np.exp(-((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (2.0 * sigma * sigma))[:, :, None]
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1.0 - a) + c * a
    return out


def _place(rng: np.random.Generator, n: int, size: int) -> list[tuple[float, float, float]]:
    """Centres and circumradii (cx, cy, r) of `n` instances whose circumscribed discs stay
    inside the image and apart from each other (reject sampling, shrinking on failure)."""
    lo, hi = _RADIUS_SINGLE if n == 1 else _RADIUS_MULTI
    shrink = 1.0
    while True:
        radii = rng.uniform(lo, hi, n) * size * shrink
        placed: list[tuple[float, float, float]] = []
        for r in radii:
            for _ in range(60):
                cx, cy = rng.uniform(r + 1.0, size - 1.0 - r, 2)
                if all(math.hypot(cx - px, cy - py) >= r + pr + 1.0 for px, py, pr in placed):
                    placed.append((float(cx), float(cy), float(r)))
                    break
            else:
                break
        if len(placed) == n:
            return placed
        shrink *= 0.9


def _coverage(shape: str, cx: float, cy: float, r: float, angle: float, aspect: float,
              box: tuple[int, int, int, int]) -> np.ndarray:
    """Area share of every pixel of `box` (x0, y0, x1, y1) covered by the shape."""
    x0, y0, x1, y1 = box
    w, h = (x1 - x0) * _SUPER, (y1 - y0) * _SUPER
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    offset = np.array([(cx - x0) * _SUPER, (cy - y0) * _SUPER])
    for poly, fill in _SHAPES[shape]:
        pts = (poly * np.array([1.0, aspect])) @ rot.T * (r * _SUPER) + offset - 0.5
        draw.polygon([tuple(p) for p in pts], fill=255 if fill else 0)
    cov = np.asarray(canvas, dtype=np.float32).reshape(y1 - y0, _SUPER, x1 - x0, _SUPER)
    return cov.mean(axis=(1, 3)) / 255.0


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _object_colour(rng: np.random.Generator, local: np.ndarray) -> np.ndarray:
    """A random colour that stands out from `local` (the mean colour of the background under
    the object) in lightness and in colour; the best of 32 tries if none does."""
    best, best_score = None, -1.0
    for _ in range(32):
        col = _hsv_to_rgb(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.1, 1.0))
        d_luma = abs(_luma(col) - _luma(local))
        d = float(np.linalg.norm(col - local))
        if d_luma >= _MIN_LUMA_CONTRAST and d >= _MIN_CONTRAST:
            return col
        score = min(d_luma / _MIN_LUMA_CONTRAST, d / _MIN_CONTRAST)
        if score > best_score:
            best, best_score = col, score
    return best  # type: ignore[return-value]


def generate_sample(index: int, seed: int, size: int = 64, *,
                    multi_share: float = MULTI_SHARE) -> Sample:
    """The sample number `index` of the data set `seed` at `size` x `size` pixels."""
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative, got index={index}, seed={seed}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if not 0.0 <= multi_share <= 1.0:
        raise ValueError(f"multi_share must lie in [0, 1], got {multi_share}")
    rng = np.random.default_rng([int(seed), int(index), int(size)])
    label = int(rng.integers(len(CLASS_NAMES)))
    n = int(rng.integers(2, MAX_INSTANCES + 1)) if rng.random() < multi_share else 1
    shape = CLASS_NAMES[label]

    img = _distractors(rng, _background(rng, size), size)
    masks = np.zeros((n, size, size), dtype=bool)
    boxes: list[tuple[int, int, int, int]] = []
    radii = []
    for i, (cx, cy, r) in enumerate(_place(rng, n, size)):
        box = (max(0, int(cx - r) - 1), max(0, int(cy - r) - 1),
               min(size, int(math.ceil(cx + r)) + 1), min(size, int(math.ceil(cy + r)) + 1))
        x0, y0, x1, y1 = box
        angle = rng.uniform(0.0, 2.0 * np.pi)
        aspect = rng.uniform(0.8, 1.0)
        cov = _coverage(shape, cx, cy, r, angle, aspect, box)
        region = img[y0:y1, x0:x1]
        col = _object_colour(rng, region.reshape(-1, 3).mean(0))
        # soft linear shading across the object, so it is not one flat colour
        gdir = rng.normal(0.0, 1.0, 2)
        gdir *= rng.uniform(0.0, 30.0) / max(float(np.linalg.norm(gdir)), 1e-9)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        ramp = ((xx + 0.5 - cx) * gdir[0] + (yy + 0.5 - cy) * gdir[1]) / r
        fill = np.clip(col[None, None, :] + ramp[:, :, None], 0.0, 255.0)
        alpha = cov[:, :, None]
        img[y0:y1, x0:x1] = region * (1.0 - alpha) + fill * alpha
        inside = cov >= 0.5
        if not inside.any():   # a sliver at a tiny image size: keep its most covered pixel
            inside.flat[int(np.argmax(cov))] = True
        masks[i, y0:y1, x0:x1] = inside
        ys, xs = np.nonzero(masks[i])
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        radii.append(r)
    img += rng.normal(0.0, rng.uniform(2.0, 8.0), img.shape)
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return Sample(image=image, label=label, masks=masks, boxes=boxes, radii=tuple(radii))


def instance_map(masks: np.ndarray) -> np.ndarray:
    """`(n, H, W)` bool masks -> `(H, W)` uint8: 0 background, `i` where instance `i` (1-based)."""
    out = np.zeros(masks.shape[1:], dtype=np.uint8)
    for i, m in enumerate(masks, start=1):
        out[m] = i
    return out


# --------------------------------------------------------------------------------------------
# A torch-compatible data set, generated on the fly

class SyntheticShapes:
    """`count` samples of the data set `seed`, made on demand; a torch map-style Dataset.

    `ds[i]` is `(image, label)`: a float CxHxW tensor in [0, 1], or `transform(image)` applied
    to the uint8 HxWx3 numpy image when a transform is given. `ds.sample(i)` gives the whole
    `Sample` (masks included).
    """

    classes = CLASS_NAMES

    def __init__(self, count: int, seed: int, size: int = 64,
                 transform: Optional[Callable[[np.ndarray], Any]] = None, *,
                 multi_share: float = MULTI_SHARE) -> None:
        if count < 0:
            raise ValueError(f"count must be non-negative, got {count}")
        self.count, self.seed, self.size = int(count), int(seed), int(size)
        self.transform = transform
        self.multi_share = float(multi_share)

    def __len__(self) -> int:
        return self.count

    def sample(self, index: int) -> Sample:
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} samples")
        return generate_sample(index, self.seed, self.size, multi_share=self.multi_share)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        s = self.sample(int(index))
        if self.transform is not None:
            return self.transform(s.image), s.label
        import torch

        return torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0), s.label


# --------------------------------------------------------------------------------------------
# On disk: images/00000.png, masks/00000.png, labels.csv, classes.txt (read by `datasets/ncviz.py`)

def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_dataset(directory: str | os.PathLike, count: int, seed: int, size: int = 64, *,
                  multi_share: float = MULTI_SHARE) -> Path:
    """Write `count` samples under `directory` (same bytes for the same arguments).

    Layout: `images/NNNNN.png` (RGB), `masks/NNNNN.png` (uint8: 0 background, i = instance i),
    `labels.csv` (`file,label,class_name,instances`, image path relative to `directory`) and
    `classes.txt` (one class name a line). Every file is written atomically; `labels.csv` last,
    so a data set with a labels file is complete. Returns the directory.
    """
    root = Path(directory)
    width = max(5, len(str(max(count - 1, 0))))
    rows = []
    for index in range(count):
        s = generate_sample(index, seed, size, multi_share=multi_share)
        name = f"{index:0{width}d}.png"
        atomic_write_bytes(root / "images" / name, _png_bytes(s.image))
        atomic_write_bytes(root / "masks" / name, _png_bytes(instance_map(s.masks)))
        rows.append((f"images/{name}", s.label, s.class_name, s.instances))
    atomic_write_bytes(root / "classes.txt", "".join(f"{c}\n" for c in CLASS_NAMES).encode())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(LABELS_HEADER)
    writer.writerows(rows)
    atomic_write_bytes(root / "labels.csv", text.getvalue().encode())
    _warn_about_leftovers(root, {Path(r[0]).name for r in rows})
    return root


def _warn_about_leftovers(root: Path, written: set[str]) -> None:
    """Images of an earlier, larger data set in the same folder are not deleted: say so."""
    stale = [p for p in (root / "images").glob("*.png") if p.name not in written]
    if stale:
        log.warning("%s: %d images of an earlier data set remain in images/; labels.csv lists only the "
                    "%d new ones (evaluate reads labels.csv)", root, len(stale), len(written))
