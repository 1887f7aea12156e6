"""Progress off a terminal: a line at a fixed interval (NCVIZ_PROGRESS_SECONDS, 30 s by default) for
`evaluate` and `batch`, and `evaluate --faithfulness` says its cost before it starts."""
from __future__ import annotations

import re
import time

import pytest

from nc_viz.cli import main
from nc_viz.cli.progress import INTERVAL_ENV, Heartbeat, progress_interval


@pytest.mark.parametrize("value, expected", [(None, 30.0), ("0.5", 0.5), ("abc", 30.0), ("-1", 30.0),
                                             ("nan", 30.0), ("0", 30.0)])
def test_the_interval_is_30_s_unless_the_environment_gives_a_positive_number(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(INTERVAL_ENV, raising=False)
    else:
        monkeypatch.setenv(INTERVAL_ENV, value)
    assert progress_interval() == expected


def test_a_heartbeat_says_the_count_at_each_interval_while_the_work_waits():
    lines: list[str] = []
    beat = Heartbeat("evaluate", 10, interval=0.02, echo=lines.append).start()
    beat.advance(4)
    time.sleep(0.2)   # one long batch: no advance, lines still come
    beat.stop()
    count = len(lines)
    assert count >= 3 and all(line.startswith("evaluate: 4/10 images, ") for line in lines), lines
    assert "images/s, about" in lines[-1]
    time.sleep(0.06)
    assert len(lines) == count   # none after stop


def test_evaluate_says_the_faithfulness_cost_and_logs_progress_off_a_terminal(tmp_path, capsys, monkeypatch):
    data = tmp_path / "d"
    assert main(["make-data", str(data), "--count", "4", "--seed", "9"]) == 0
    capsys.readouterr()
    monkeypatch.setenv(INTERVAL_ENV, "0.01")
    assert main(["evaluate", str(data), "--faithfulness", "deletion,insertion,drop", "--steps", "8",
                 "--bootstrap", "0", "--workers", "0", "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    # --steps 8: 8 + 1 forward images per image for deletion and for insertion, 2 for drop
    cost = next(line for line in err.splitlines() if line.startswith("faithfulness at "))
    assert "20 forward images per image and model (deletion 9, insertion 9, drop 2)" in cost
    assert "160 for 2 models and 4 images" in cost
    first = next(i for i, line in enumerate(err.splitlines()) if line.startswith("first batch: 2 images in "))
    assert err.splitlines().index(cost) < first and "for 4 images" in err.splitlines()[first]
    assert re.search(r"^evaluate: [0-4]/4 images, ", err, re.MULTILINE), err


def test_evaluate_without_faithfulness_has_no_cost_line(tmp_path, capsys, monkeypatch):
    data = tmp_path / "d"
    assert main(["make-data", str(data), "--count", "2", "--seed", "9"]) == 0
    monkeypatch.setenv(INTERVAL_ENV, "1000")
    capsys.readouterr()
    assert main(["evaluate", str(data), "--bootstrap", "0", "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert "faithfulness at" not in err and "first batch" not in err and "evaluate: " not in err


def test_batch_logs_progress_off_a_terminal(tmp_path, capsys, monkeypatch, image_dir):
    monkeypatch.setenv(INTERVAL_ENV, "0.01")
    assert main(["batch", str(image_dir), "-o", str(tmp_path / "out"), "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^batch: \d+/\d+ figures, ", err, re.MULTILINE), err
