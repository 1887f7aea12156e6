"""`evaluate --faithfulness`: per-image columns, paired intervals, and a plain folder without labels."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nc_viz.cli import main
from nc_viz.tasks.evaluate.records import read_records

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_faithfulness_columns_and_intervals(tmp_path, capsys):
    data = tmp_path / "d"
    assert main(["make-data", str(data), "--count", "4", "--seed", "9"]) == 0
    report = tmp_path / "r"
    assert main(["evaluate", str(data), "--faithfulness", "deletion,insertion,drop", "--steps", "8",
                 "--bootstrap", "20", "--workers", "0", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "deletion AUC" in out and "insertion AUC" in out and "Average Drop" in out
    rows = read_records(report / "records.csv")
    for row in rows:
        assert 0.0 <= row["deletion_auc"] <= 1.0 and 0.0 <= row["insertion_auc"] <= 1.0
        assert 0.0 <= row["avg_drop"] <= 1.0 and row["increase"] in (0.0, 1.0)
    payload = json.loads((report / "report.json").read_text())
    for role in ("baseline", "nc"):
        mine = [r for r in rows if r["role"] == role]
        assert payload["results"][role]["deletion_auc"] == pytest.approx(np.mean([r["deletion_auc"] for r in mine]))
        assert payload["results"][role]["avg_drop"] == pytest.approx(100 * np.mean([r["avg_drop"] for r in mine]))
    assert payload["intervals"]["insertion_auc"]["n_images"] == 4
    assert payload["protocol"]["faithfulness"] == ["deletion", "insertion", "drop"]
    assert payload["protocol"]["deletion_insertion_steps"] == 8
    for role in ("baseline", "nc"):  # mean curves: 8 steps, 9 points; the first is the untouched image
        curves = payload["faithfulness_curves"][role]
        assert len(curves["deletion_curve"]) == len(curves["insertion_curve"]) == 9
        mine = [r for r in rows if r["role"] == role]
        if all(r["correct"] for r in mine):  # then the explained (true) class is the predicted one
            assert curves["deletion_curve"][0] == pytest.approx(np.mean([r["probability"] for r in mine]), abs=1e-5)
    assert (report / "deletion_insertion.png").stat().st_size > 0 and (report / "deletion_insertion.pdf").exists()


def test_a_plain_folder_without_labels_scores_the_predicted_class(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in sorted(SAMPLES.glob("*.png"))[:3]:
        shutil.copy(path, plain / path.name)
    records = tmp_path / "records.csv"
    assert main(["evaluate", str(plain), "--faithfulness", "drop", "--bootstrap", "10", "--workers", "0",
                 "--records", str(records)]) == 0
    captured = capsys.readouterr()
    assert "images layout, 3 images" in captured.err and "predicted class" in captured.err
    assert "Average Drop" in captured.out and "top-1 accuracy" not in captured.out
    rows = read_records(records)
    assert len(rows) == 6 and all(r["label"] is None and r["correct"] is None for r in rows)


def test_an_unknown_faithfulness_name_is_a_usage_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--faithfulness", "delete"]) == 2
    assert "--faithfulness delete" in capsys.readouterr().err
