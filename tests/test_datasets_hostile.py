"""Annotation files a careless or hostile user may hand `evaluate`: each is a counted problem or one
clear line, never a hang or an internal error."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nc_viz.cli import main
from nc_viz.datasets import read_annotated
from nc_viz.core.errors import NcVizError
from conftest import copy_data


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("hostile-data") / "d"
    assert main(["make-data", str(data), "--count", "4", "--seed", "2"]) == 0
    return data


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_mask_is_a_problem_not_a_hang(made, tmp_path):
    data = copy_data(made, tmp_path)
    mask = sorted((data / "masks").iterdir())[0]
    mask.unlink()
    os.mkfifo(mask)
    dataset = read_annotated(data, "ncviz")          # would block forever if the FIFO were opened
    assert len(dataset) == 3 and any("FIFO" in p.reason or "fifo" in p.reason.lower() for p in dataset.problems)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_annotation_file_is_one_clear_error(made, tmp_path):
    data = copy_data(made, tmp_path)
    target = data / "wsol" / "class_labels.txt"
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(NcVizError, match="class_labels.txt: .*only regular files are read"):
        read_annotated(data / "wsol", "wsol")


def test_an_rgb_instance_mask_is_a_problem(made, tmp_path):
    data = copy_data(made, tmp_path)
    mask = sorted((data / "masks").iterdir())[1]
    Image.open(mask).convert("RGB").save(mask)
    dataset = read_annotated(data, "ncviz")
    assert len(dataset) == 3 and any("one channel" in p.reason for p in dataset.problems)


def test_a_mask_whose_header_claims_too_many_pixels_is_a_problem(made, tmp_path, monkeypatch):
    data = copy_data(made, tmp_path)
    monkeypatch.setenv("NCVIZ_MAX_IMAGE_PIXELS", "1000")   # the 64 x 64 masks are 4096 pixels
    dataset = read_annotated(data, "ncviz")
    assert len(dataset) == 0 and all("NCVIZ_MAX_IMAGE_PIXELS" in p.reason for p in dataset.problems)


def test_evaluate_with_a_bad_mask_counts_it_and_finishes(made, tmp_path, capsys):
    data = copy_data(made, tmp_path)
    mask = sorted((data / "masks").iterdir())[0]
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(mask)
    assert main(["evaluate", str(data), "--bootstrap", "5", "--workers", "0", "--device", "cpu"]) == 0
    assert "1 annotation problems" in capsys.readouterr().err
