"""Decoding every supported image kind, and the errors for files that do not decode."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nc_viz.models.inputs import find_images, load_image
from nc_viz.models.preprocessing import Preprocess
from nc_viz.core.errors import ImageError


def test_every_supported_kind_decodes_to_rgb(image_dir):
    paths = find_images(image_dir)
    assert len(paths) == 9
    for path in paths:
        img = load_image(path)
        assert img.mode == "RGB" and img.size == (40, 30), path


def test_sixteen_bit_png_keeps_its_range(image_dir):
    arr = np.asarray(load_image(image_dir / "deep16.png"))
    assert arr.max() > 200 and arr.min() < 5  # scaled, not clipped to white


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    path = tmp_path / "clear.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert (np.asarray(load_image(path)) == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_broken_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="bad.jpg: not an image"):
        load_image(bad)
    truncated = tmp_path / "half.png"
    Image.new("RGB", (64, 64), "blue").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ImageError, match="half.png"):
        load_image(truncated)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (200, 200)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path)


def test_find_images_ignores_other_files_and_any_case(tmp_path):
    (tmp_path / "A.JPG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(b"x")
    assert [p.name for p in find_images(tmp_path)] == ["A.JPG"]
    assert [p.name for p in find_images(tmp_path, recursive=True)] == ["A.JPG", "b.png"]


def test_preprocess_round_trip_shows_what_the_model_saw(rgb_image):
    pre = Preprocess(input_size=32, crop_pct=1.0)
    x = pre.to_tensor(load_image(rgb_image))
    assert x.shape == (3, 32, 32)
    seen = np.asarray(pre.crop(load_image(rgb_image)))
    assert np.abs(pre.to_uint8(x).astype(int) - seen.astype(int)).max() <= 1


def test_a_folder_run_and_every_data_set_reader_take_the_same_image_files(tmp_path):
    """One list of image suffixes: `batch` (find_images) and the data-set readers agree, GIF
    included (its first frame decodes to RGB, transparency over white)."""
    from nc_viz.datasets import read_annotated

    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :4] = (204, 0, 51)  # in the web palette GIF conversion uses
    for name in ("a.jpg", "b.JPEG", "c.png", "d.bmp", "e.webp", "f.tif", "g.TIFF"):
        Image.fromarray(rgb).save(tmp_path / name)
    gif = Image.fromarray(rgb).convert("P")
    gif.info["transparency"] = gif.getpixel((7, 0))  # the right half is transparent
    gif.save(tmp_path / "h.gif", transparency=gif.info["transparency"])
    for name in ("notes.txt", "model.pt", "x.svg", "y.pdf"):
        (tmp_path / name).write_bytes(b"x")
    expected = ["a.jpg", "b.JPEG", "c.png", "d.bmp", "e.webp", "f.tif", "g.TIFF", "h.gif"]
    assert [p.name for p in find_images(tmp_path)] == expected
    assert [s.path.name for s in read_annotated(tmp_path, "images").samples] == expected
    decoded = np.asarray(load_image(tmp_path / "h.gif"))
    assert decoded.shape == (6, 8, 3)
    assert (decoded[:, :4] == (204, 0, 51)).all() and (decoded[:, 4:] == 255).all()


def test_image_statistics_and_suffixes_are_defined_once():
    """ImageNet and CIFAR mean/std and the image suffixes live in `core/constants.py` alone."""
    import re
    from pathlib import Path

    from nc_viz.core import constants

    assert constants.IMAGENET_MEAN == (0.485, 0.456, 0.406) and constants.IMAGENET_STD == (0.229, 0.224, 0.225)
    assert constants.CIFAR_MEAN == (0.5071, 0.4865, 0.4409) and constants.CIFAR_STD == (0.2673, 0.2564, 0.2762)
    literal = re.compile(r"0\.485\b|0\.229\b|0\.5071\b|0\.2673\b|[\"']\.tiff?[\"']|[\"']\.webp[\"']")
    root = Path(constants.__file__).resolve().parents[1]
    found = [f"{p.relative_to(root)}:{n}" for p in sorted(root.rglob("*.py")) if p.name != "constants.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if literal.search(line)]
    assert not found, f"defined outside nc_viz/core/constants.py: {found}"
