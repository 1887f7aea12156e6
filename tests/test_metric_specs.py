"""One registry of evaluate's metrics (`metrics.specs`): records.csv's columns, the data set's
means, the report's labels, units and digits all come from it, and a new metric registered
there reaches every one of them."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from nc_viz.metrics import specs
from nc_viz.metrics.bootstrap import Interval
from nc_viz.metrics.faithfulness import FAITHFULNESS, FaithfulnessMetric, register as register_faithfulness
from nc_viz.metrics.specs import METRICS, MetricSpec
from nc_viz.tasks.evaluate import EvalOptions
from nc_viz.tasks.evaluate.options import mean_metrics, record_metrics
from nc_viz.tasks.evaluate.report import comparison_table, differences_figure

RECORDS = ("probability", "iou_tau_0.2", "gt_known_loc", "top1_loc", "energy", "pointing", "coverage_multi",
           "topk_corr", "topk_iou", "published_corr")
MEANS = {"correct": "accuracy", "gt_known_loc": "gt_known_loc", "top1_loc": "top1_loc", "energy": "energy",
         "pointing": "pointing_game", "coverage_multi": "instance_coverage_multi", "topk_corr": "topk_corr",
         "topk_iou": "topk_iou", "published_corr": "published_corr"}
TABLE = ("accuracy", "max_box_acc", "max_box_acc_v2", "gt_known_loc", "top1_loc", "pxap", "energy", "pointing_game",
         "instance_coverage_multi", "topk_corr", "topk_iou", "published_corr", "deletion_auc", "insertion_auc",
         "avg_drop", "increase", "road_morf", "road_lerf", "road_combined")


def test_records_columns_and_means_follow_the_registry_and_the_faithfulness_asked_for():
    assert record_metrics(EvalOptions()) == RECORDS
    assert mean_metrics(EvalOptions()) == MEANS
    options = EvalOptions(faithfulness=("deletion", "drop", "road"))
    faithful = ("deletion_auc", "avg_drop", "increase", "road_morf", "road_lerf", "road_combined")
    assert record_metrics(options) == RECORDS + faithful
    assert mean_metrics(options) == {**MEANS, **{c: c for c in faithful}}
    for name, metric in FAITHFULNESS.items():   # the compute side fills exactly the registry's columns
        assert metric.columns == specs.faithfulness_columns(name) and metric.columns


def test_labels_units_and_directions():
    assert tuple(specs.table_labels()) == TABLE
    # PxAP is computed in percent (wsol, as the reference) and shown and plotted as such; it is not
    # a mean, so nothing scales it
    assert specs.percent_keys() == {"max_box_acc", "max_box_acc_v2", "gt_known_loc", "top1_loc", "pxap",
                                    "avg_drop", "increase"}
    assert METRICS["pxap"].kind == "dataset" and METRICS["pxap"].scale == 1.0
    assert {k for k, s in METRICS.items() if s.scale == 100.0} == {"gt_known_loc", "top1_loc", "avg_drop", "increase"}
    assert {k for k, s in METRICS.items() if s.better == "lower"} == {
        "topk_corr", "topk_iou", "published_corr", "deletion_auc", "avg_drop", "road_morf"}
    assert all("%" in s.label for s in METRICS.values() if s.percent)
    assert all("%" not in (s.label or "") for s in METRICS.values() if not s.percent)


@pytest.mark.parametrize("bad", [dict(kind="sum"), dict(column=None), dict(label=None),
                                 dict(kind="per_image"), dict(better="more"), dict(decimals=9)])
def test_a_spec_that_contradicts_itself_is_refused(bad):
    good = dict(name="x", kind="mean", column="x", label="x")
    with pytest.raises(ValueError, match="metric 'x'"):
        MetricSpec(**{**good, **bad})
    with pytest.raises(ValueError, match="already registered"):
        specs.register(MetricSpec("energy", "mean", "energy", "again"))


def _evaluation(results: dict, intervals: dict) -> SimpleNamespace:
    return SimpleNamespace(results=results, intervals=intervals, images=3, bootstrap=10, has_non_finite=False)


def test_a_registered_metric_reaches_records_means_table_and_plot():
    spec = MetricSpec("hits_inside", "mean", "hits", "hits inside (%)", percent=True, better="higher", decimals=0)
    specs.register(spec)
    try:
        assert record_metrics(EvalOptions())[-1] == "hits" and mean_metrics(EvalOptions())["hits"] == "hits_inside"
        assert spec.scale == 100.0
        interval = Interval(diff=12.345, low=-1.0, high=20.0, excludes_zero=False, base=50.0, nc=62.345,
                            level=0.95, n_images=3, n_dropped=0, n_resamples=10)
        table = comparison_table(_evaluation({"baseline": {"hits_inside": 50.0}, "nc": {"hits_inside": 62.345}},
                                             {"hits_inside": interval}))
        assert "| hits inside (%) | higher | 3 | 50 | 62 | +12 | [-1, 20] | no claim (n < 30) |" in table.splitlines()
        figure = differences_figure(_evaluation({}, {"hits_inside": interval}))
        axis = figure.axes[0]
        assert [t.get_text() for t in axis.get_yticklabels()] == ["hits inside (%) [higher is better]"]
        assert "percentage points" in axis.get_xlabel()
    finally:
        specs.unregister("hits_inside")
    assert "hits" not in record_metrics(EvalOptions())


def test_the_table_prints_pxap_in_percent_as_computed():
    """PxAP's number is shown as the mask accumulator gives it (percent), with its interval."""
    interval = Interval(diff=6.41, low=2.56, high=10.34, excludes_zero=True, base=59.3, nc=65.71, level=0.95,
                        n_images=40, n_dropped=0, n_resamples=10)
    table = comparison_table(_evaluation({"baseline": {"pxap": 59.3}, "nc": {"pxap": 65.71}}, {"pxap": interval}))
    assert "| PxAP (%, masks) | higher | 40 | 59.3 | 65.7 | +6.4 * | [2.6, 10.3] | NC better |" in table.splitlines()


def test_faithfulness_names_are_one_registry():
    assert list(FAITHFULNESS) == ["deletion", "insertion", "drop", "road"]
    with pytest.raises(ValueError, match="faithfulness metric named 'drop' is already registered"):
        register_faithfulness(FaithfulnessMetric("drop", FAITHFULNESS["drop"].specs, FAITHFULNESS["drop"].compute, "2"))
    # a new name whose spec takes a column's name already in the table: refused, nothing left behind
    taken = FaithfulnessMetric("zz_twice", (MetricSpec("zz_new", "mean", "zz_new", "new"),
                                            MetricSpec("avg_drop", "mean", "avg_drop", "again")),
                               FAITHFULNESS["drop"].compute, "2")
    with pytest.raises(ValueError, match="metric named 'avg_drop' is already registered"):
        register_faithfulness(taken)
    assert "zz_twice" not in FAITHFULNESS and "zz_new" not in METRICS
    assert METRICS["avg_drop"].faithfulness == "drop"
