"""What `evaluate`'s report shows: no claim below 30 images, the better direction of each metric,
fixed decimals per metric, the per-IoU BoxAcc rows, the pointing tolerance, the coarse-map note,
report.tex (booktabs, the same rows), the per-class breakdown and the published reference."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nc_viz.core.latex import booktabs, escape
from nc_viz.metrics.bootstrap import Interval, verdict
from nc_viz.metrics.specs import METRICS
from nc_viz.metrics.wsol import THRESHOLDS, pack_correctness
from nc_viz.tasks.evaluate.per_class import per_class_breakdown, per_class_md
from nc_viz.tasks.evaluate.records import RecordWriter
from nc_viz.tasks.evaluate.report import _report_md, differences_figure, report_json
from nc_viz.tasks.evaluate.tables import comparison_table, paper_dataset, report_tex


def _interval(diff: float, low: float, high: float, n: int, base: float = 1.0) -> Interval:
    return Interval(diff=diff, low=low, high=high, excludes_zero=low > 0 or high < 0, base=base, nc=base + diff,
                    level=0.95, n_images=n, n_dropped=0, n_resamples=100)


def _evaluation(results: dict, intervals: dict, images: int = 40, **extra) -> SimpleNamespace:
    return SimpleNamespace(results=results, intervals=intervals, images=images, bootstrap=100, has_non_finite=False,
                           failed=[], curves={}, correctness={}, per_class={}, **extra)


def _row(table: str, label: str) -> list[str]:
    lines = [line for line in table.splitlines() if line.startswith(f"| {label} |")]
    assert len(lines) == 1, (label, table)
    return [cell.strip() for cell in lines[0].strip("|").split(" | ")]


def test_no_mark_below_30_images_and_the_n_beside_each_row():
    """The same interval, excluding 0: over 12 images no claim, over 30 a claim in the metric's direction."""
    for n, mark, said in ((12, "", "no claim (n < 30)"), (29, "", "no claim (n < 30)"), (30, " *", "NC better")):
        table = comparison_table(_evaluation({"baseline": {"energy": 0.2}, "nc": {"energy": 0.25}},
                                             {"energy": _interval(0.05, 0.01, 0.09, n, 0.2)}))
        row = _row(table, METRICS["energy"].label)
        assert row == [METRICS["energy"].label, "higher", str(n), "0.200", "0.250", "+0.050" + mark,
                       "[0.010, 0.090]", said]
    # a lower-is-better metric that rose: NC worse; an interval holding 0: no clear difference
    table = comparison_table(_evaluation({"baseline": {"topk_corr": 0.5, "topk_iou": 0.4},
                                          "nc": {"topk_corr": 0.6, "topk_iou": 0.41}},
                                         {"topk_corr": _interval(0.1, 0.05, 0.15, 40, 0.5),
                                          "topk_iou": _interval(0.01, -0.02, 0.04, 40, 0.4)}))
    assert _row(table, METRICS["topk_corr"].label)[1:] == ["lower", "40", "0.500", "0.600", "+0.100 *",
                                                          "[0.050, 0.150]", "NC worse"]
    assert _row(table, METRICS["topk_iou"].label)[-1] == "no clear difference"


def test_verdict_follows_the_direction_and_the_rule():
    assert verdict(_interval(-0.1, -0.2, -0.05, 30), "lower") == "nc_better"
    assert verdict(_interval(-0.1, -0.2, -0.05, 30), "higher") == "nc_worse"
    assert verdict(_interval(-0.1, -0.2, -0.05, 30), None) == "differs"
    assert verdict(_interval(-0.1, -0.2, -0.05, 29), "lower") == "too_few_images"
    assert verdict(_interval(0.0, -0.2, 0.05, 300), "lower") == "no_clear_difference"
    nan = float("nan")
    assert verdict(Interval(nan, nan, nan, False, nan, nan, 0.95, 0, 0, 10), "higher") == "too_few_images"


def test_differences_plot_colours_nc_better_worse_and_unclear():
    from matplotlib.colors import to_hex

    intervals = {"max_box_acc_v2": _interval(5.0, 1.0, 9.0, 50, 60.0),      # higher is better: better
                 "topk_corr": _interval(0.1, 0.05, 0.15, 50),               # lower is better: worse
                 "energy": _interval(0.05, 0.01, 0.09, 12)}                 # excludes 0, but n < 30
    figure = differences_figure(_evaluation({}, intervals))
    colours = {line.get_gid().split(":")[1]: to_hex(line.get_color())
               for ax in figure.axes for line in ax.lines if (line.get_gid() or "").startswith("difference:")}
    assert colours == {"max_box_acc_v2": to_hex("tab:blue"), "topk_corr": to_hex("tab:orange"),
                       "energy": to_hex("0.55")}
    ticks = [t.get_text() for ax in figure.axes for t in ax.get_yticklabels()]
    assert any("[lower is better]" in t for t in ticks) and any("[higher is better]" in t for t in ticks)


def test_each_metric_has_fixed_decimals_whatever_its_values():
    """A column never mixes 88, 3.988, 0.0005913 and 2.895e-05: each metric its own decimals."""
    results = {"baseline": {"max_box_acc_v2": 88.0, "energy": 0.0005913, "published_corr": 2.895e-05,
                            "accuracy": 0.75},
               "nc": {"max_box_acc_v2": 3.988, "energy": 0.01, "published_corr": 0.5, "accuracy": 1.0}}
    table = comparison_table(_evaluation(results, {}))
    assert _row(table, METRICS["max_box_acc_v2"].label)[3:6] == ["88.0", "4.0", "-84.0"]
    assert _row(table, METRICS["energy"].label)[3:6] == ["0.001", "0.010", "+0.009"]
    assert _row(table, METRICS["published_corr"].label)[3:6] == ["0.000", "0.500", "+0.500"]
    assert _row(table, METRICS["accuracy"].label)[3:6] == ["0.750", "1.000", "+0.250"]
    assert all(METRICS[k].places == (1 if METRICS[k].percent else 3) for k in METRICS)
    assert "e-0" not in table


def _box_results(gt_known: float, best: float) -> dict:
    return {"max_box_acc": best, "max_box_acc_v2": 70.0, "gt_known_loc": gt_known, "top1_loc": gt_known,
            "box_acc_v2_by_delta": {"0.3": 90.0, "0.5": 75.0, "0.7": 45.0}, "best_tau_v1": 0.7,
            "boxed_images": 12, "pointing_game": 1.0}


def test_per_iou_rows_the_pointing_tolerance_and_the_coarse_map_note():
    evaluation = _evaluation({"baseline": _box_results(0.0, 80.0), "nc": _box_results(0.0, 90.0)}, {}, images=12)
    table = comparison_table(evaluation, protocol={"pointing_tolerance": None, "input_size": 224})
    assert [_row(table, f"  BoxAcc (%, IoU delta {d}, best tau)")[3] for d in ("0.3", "0.5", "0.7")] == [
        "90.0", "75.0", "45.0"]
    assert _row(table, "pointing game (hit rate), tolerance 15.0 px")[2] == ""      # no interval: n not known
    assert "tolerance 7.0 px" in comparison_table(evaluation, protocol={"pointing_tolerance": 7, "input_size": 224})
    assert _row(table, "GT-known Loc (%, tau 0.2) \u2020")[3] == "0.0"
    context = {"data": {"format": "ncviz", "path": "d"}, "protocol": {"input_size": 224}}
    md = _report_md(evaluation, context)
    assert "GT-known Loc and Top-1 Loc are 0 for baseline and nc" in md and "tau = 0.2" in md
    assert report_json(evaluation, context)["notes"][0].startswith("\u2020 GT-known Loc")
    # a model with no box right at any threshold is not "too coarse": no note, no mark
    plain = _evaluation({"baseline": _box_results(0.0, 0.0), "nc": _box_results(10.0, 20.0)}, {}, images=12)
    assert "\u2020" not in _report_md(plain, context) and "notes" not in report_json(plain, context)


def _markdown_rows(md: str) -> list[str]:
    lines = md.split("\n\n")
    table = next(block for block in lines if block.startswith("| metric |"))
    return [line for line in table.splitlines()[2:]]


def test_report_tex_has_the_same_rows_in_booktabs_and_compiles(tmp_path):
    intervals = {"max_box_acc_v2": _interval(-5.0, -9.0, -1.0, 50, 60.0), "energy": _interval(0.05, 0.01, 0.09, 12)}
    results = {"baseline": {**_box_results(0.0, 80.0), "energy": 0.2}, "nc": {**_box_results(0.0, 90.0), "energy": 0.25}}
    evaluation = _evaluation(results, intervals, images=50)
    context = {"data": {"format": "cub", "path": "CUB_200_2011"},
               "protocol": {"input_size": 224, "bootstrap": 100, "seed": 0, "pointing_tolerance": None}}
    tex = report_tex(evaluation, context)
    body = tex[tex.index("\\midrule") + len("\\midrule"):tex.index("\\bottomrule")]
    rows = [line for line in body.strip().splitlines() if line.strip() != "\\midrule"]
    assert len(rows) == len(_markdown_rows(_report_md(evaluation, context)))
    assert all(row.count(" & ") == 6 and row.endswith(r"\\") for row in rows)
    assert "\\toprule" in tex and "\\bottomrule" in tex and "$-$5.0 *" in tex and "\\textdagger{}" in tex
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 2    # the table and the reference's
    for bad in ("\u2212", "\u2020", "%,", "_"):   # every special character escaped or translated
        assert bad not in tex.replace("\\%,", "").replace("\\_", "").split("\n", 1)[1], bad
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no pdflatex here: the structure is checked above")
    (tmp_path / "report.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      "\\input{report.tex}\n\\end{document}\n")
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_latex_escape_and_booktabs():
    assert escape("a_b & 50% #1 {x} ~ ^ \\ $ <3 \u2212 \u03c4") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$ \textless{}3 $-$ $\tau$")
    assert escape("caf\u00e9 \u4e2d") == "caf\\'{e} ?"
    table = booktabs(["a", "b"], [["1", "2"], ["\\midrule"], ["3", "4"]], "lr")
    assert table.splitlines() == ["\\begin{tabular}{lr}", "\\toprule", r"a & b \\", "\\midrule", r"1 & 2 \\",
                                  "\\midrule", r"3 & 4 \\", "\\bottomrule", "\\end{tabular}"]
    assert booktabs(["a"], [], ["p{3cm}"]).startswith("\\begin{tabular}{p{3cm}}")
    with pytest.raises(ValueError, match="align"):
        booktabs(["a", "b"], [], "l")
    with pytest.raises(ValueError, match="2 cells"):
        booktabs(["a"], [["1", "2"]], "l")


def _records(path: Path, rows: list[tuple[str, int | None, float, float]]) -> None:
    with RecordWriter(path, ["gt_known_loc", "top1_loc", "iou_tau_0.2", "pointing", "energy", "coverage_multi"]) as w:
        w.write([{"image_id": image_id, "role": role, "label": label, "predicted": 0, "correct": label == 0,
                  "gt_known_loc": gt, "top1_loc": gt, "iou_tau_0.2": 0.3, "pointing": pointing, "energy": 0.5,
                  "coverage_multi": float("nan")}
                 for image_id, label, gt, pointing in rows for role in ("baseline", "nc")])


def test_per_class_breakdown_averages_back_to_the_data_set(tmp_path):
    rng = np.random.default_rng(3)
    ids = [f"img{i}" for i in range(9)]
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    rows = [(i, label, float(k % 2), float(k % 3 == 0)) for k, (i, label) in enumerate(zip(ids, labels))]
    rows.append(("unlabelled", None, 1.0, 1.0))   # no true class: left out of the breakdown
    _records(tmp_path / "records.csv", rows)
    correct = {role: rng.random((9, 3, len(THRESHOLDS))) < 0.5 for role in ("baseline", "nc")}
    taus = {"baseline": {"0.3": 0.2, "0.5": 0.5, "0.7": 0.731}, "nc": {"0.3": 0.0, "0.5": 0.999, "0.7": 0.4}}
    packed = {role: {"v2": pack_correctness(c)} for role, c in correct.items()}
    breakdown = per_class_breakdown(tmp_path / "records.csv", packed, ids, taus)
    classes = breakdown["classes"]
    assert [(c["label"], c["images"], c["boxed_images"]) for c in classes] == [(0, 3, 3), (1, 2, 2), (2, 4, 4)]
    for role in ("baseline", "nc"):
        index = [int(round(taus[role][d] * 1000)) for d in ("0.3", "0.5", "0.7")]
        for c in classes:
            mine = np.array(labels) == c["label"]
            expected = [correct[role][mine, d, t].mean() * 100 for d, t in enumerate(index)]
            assert list(c[role]["box_acc_v2_by_delta"].values()) == pytest.approx(expected)
            assert c[role]["box_acc_v2"] == pytest.approx(np.mean(expected))
            gt = [float(k % 2) for k in range(9) if labels[k] == c["label"]]
            assert c[role]["gt_known_loc"] == pytest.approx(100 * np.mean(gt))
            assert c[role]["instance_coverage_multi"] is None
        # weighted by their images, the classes give the data set's BoxAcc at the same taus
        whole = [correct[role][:, d, t].mean() * 100 for d, t in enumerate(index)]
        weighted = sum(c[role]["box_acc_v2"] * c["boxed_images"] for c in classes) / 9
        assert weighted == pytest.approx(np.mean(whole))
    classes[1]["name"] = "square"
    md = per_class_md(breakdown)
    assert md.startswith("## Per class (localisation)") and "| 1 square | 2 |" in md


def test_the_breakdown_is_empty_without_labels(tmp_path):
    _records(tmp_path / "records.csv", [("a", None, 1.0, 1.0)])
    assert per_class_breakdown(tmp_path / "records.csv", {}, [], {}) == {}
    assert per_class_md({}) == ""


@pytest.mark.parametrize("data, dataset", [
    ({"format": "imagenet", "path": "val_xml"}, "ImageNet"), ({"format": "cub", "path": "x"}, "CUB"),
    ({"format": "wsol", "path": "/d/metadata/ILSVRC/test"}, "ImageNet"),
    ({"format": "wsol", "path": "/d/metadata/CUB/test"}, "CUB"),
    ({"format": "wsol", "path": "/d/metadata/OpenImages/test"}, None), ({"format": "ncviz", "path": "CUB"}, None)])
def test_which_data_sets_get_the_papers_reference(data, dataset):
    assert paper_dataset(data) == dataset


def test_the_papers_cam_number_is_beside_ours_as_a_reference():
    evaluation = _evaluation({"baseline": {"max_box_acc_v2": 61.3}, "nc": {"max_box_acc_v2": 64.5}}, {})
    for fmt, value in (("imagenet", 63.7), ("cub", 63.0)):
        context = {"data": {"format": fmt, "path": "d"}, "protocol": {}}
        reference = report_json(evaluation, context)["reference"]
        assert reference["value"] == value and reference["method"] == "CAM" and reference["architecture"] == "ResNet-50"
        assert "not a comparison of the same models" in reference["note"]
        md = _report_md(evaluation, context)
        section = md[md.index("## Published reference (not the same models)"):]
        assert f"| reference: CAM, ResNet-50 (Choe et al." in section and f"| {value:.1f} |" in section
        assert "| baseline (these weights) | 61.3 |" in section and "| NC (these weights) | 64.5 |" in section
    context = {"data": {"format": "ncviz", "path": "d"}, "protocol": {}}
    assert "reference" not in report_json(evaluation, context) and "Published reference" not in _report_md(
        evaluation, context)
