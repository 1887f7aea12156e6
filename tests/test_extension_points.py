"""Each kind of extension is one module: a data-set reader module, an architecture family module
or a faithfulness metric module dropped into its package is found with no other edit (the package
imports all its modules), and a metric registered with what computes it reaches evaluate's records
with no line in the scoring code."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

READER_MODULE = '''
from .base import Dataset, Sample
from .formats import register


@register("zz_marker", lambda root: (root / "ZZ_MARKER").is_file(), summary="a ZZ_MARKER file", order=25)
def read(root, *, problems, images=None, split="test", class_names=None):
    names = (root / "ZZ_MARKER").read_text().split()
    return Dataset("zz_marker", root, [Sample(image_id=n, path=root / n, label=i) for i, n in enumerate(names)])
'''

FAMILY_MODULE = '''
from torch import nn

from .preprocessing import Preprocess
from .registry import ArchSpec, Family, register_arch, register_family

register_family(Family("zz_family", lambda keys: "zz.weight" in keys, "a family written by a test"))


def _build(num_classes, **settings):
    return nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, num_classes))


register_arch(ArchSpec("zz_net", "zz_net", "zz_family", False, Preprocess(input_size=8), ()), _build)
'''

FAITHFULNESS_MODULE = '''
import torch

from .faithfulness import FaithfulnessMetric, register
from .specs import MetricSpec


def _target_logit(model, x, maps, target, options):
    with torch.no_grad():
        return {"zz_logit": model(x).float().gather(1, target.view(-1, 1)).squeeze(1)}


register(FaithfulnessMetric("zz_logit", (
    MetricSpec("zz_target_logit", "mean", "zz_logit", "explained class's logit", better="higher"),
), _target_logit, "1 forward image per image"))
'''


@pytest.fixture
def extra_module(tmp_path, monkeypatch):
    """Write a module into a second folder of a package (as if added to the package itself) and
    take it out of `sys.modules` afterwards."""
    written = []

    def write(package: str, name: str, source: str) -> None:
        folder = tmp_path / package.replace(".", "_")
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        module = sys.modules[package]
        monkeypatch.setattr(module, "__path__", [*module.__path__, str(folder)])
        written.append(f"{package}.{name}")

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_a_reader_module_in_the_package_is_a_format_with_no_other_edit(extra_module, tmp_path):
    from nc_viz.datasets import detect_format, formats, read_annotated, reader_names
    from nc_viz.datasets.registry import load_readers

    before = reader_names()
    extra_module("nc_viz.datasets", "zz_marker", READER_MODULE)
    try:
        load_readers()   # what importing the package does
        # its `order` places it among the layouts (after wsol's 20), before the fallbacks
        assert reader_names() == ["ncviz", "wsol", "zz_marker", "imagenet", "cub", "folder", "images"]
        data = tmp_path / "data"
        data.mkdir()
        (data / "ZZ_MARKER").write_text("a.png b.png")
        assert detect_format(data) == "zz_marker"
        dataset = read_annotated(data)
        assert dataset.format == "zz_marker" and [(s.image_id, s.label) for s in dataset.samples] == [
            ("a.png", 0), ("b.png", 1)]
    finally:
        formats.unregister("zz_marker")
    assert reader_names() == before == ["ncviz", "wsol", "imagenet", "cub", "folder", "images"]


def test_a_family_module_in_the_package_registers_with_no_other_edit(extra_module):
    import torch

    from nc_viz.core.registry import import_modules
    from nc_viz.models import build_model, list_archs, list_families
    from nc_viz.models import registry

    package = sys.modules["nc_viz.models"]
    extra_module("nc_viz.models", "zz_family", FAMILY_MODULE)
    try:
        import_modules("nc_viz.models", package.__path__)   # what importing the package does
        assert list_families()[-1] == "zz_family" and "zz_net" in list_archs("zz_family")
        assert build_model("zz_net", 3)(torch.zeros(1, 3, 8, 8)).shape == (1, 3)
    finally:
        registry._ARCHS.unregister("zz_net")
        registry._FAMILIES.unregister("zz_family")


@pytest.mark.parametrize("package, imported", [("nc_viz.datasets", "nc_viz.datasets"),
                                               ("nc_viz.models", "nc_viz.models"),
                                               ("nc_viz.metrics", "nc_viz.metrics.specs")])
def test_importing_the_package_imports_every_module_of_it(package, imported):
    """So that a reader, family or faithfulness module registers itself as soon as the package (for
    metrics: the table, `metrics.specs`) is imported."""
    folder = Path(__file__).resolve().parents[1] / package.replace(".", "/")
    wanted = sorted(f"{package}.{p.stem}" for p in folder.glob("*.py") if not p.stem.startswith("_"))
    code = (f"import sys, {imported}\n"
            f"print(' '.join(sorted(m for m in sys.modules if m.startswith('{package}.'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(wanted) <= set(proc.stdout.split())


def test_families_and_readers_keep_their_order():
    """The order users read in `--format`'s choices and in the messages that list families."""
    from nc_viz.datasets import reader_names
    from nc_viz.models import list_families

    assert reader_names() == ["ncviz", "wsol", "imagenet", "cub", "folder", "images"]
    assert list_families() == ["resnet", "resnext", "wide_resnet", "cifar_resnet", "densenet", "efficientnet",
                               "mobilenet_v2", "regnet", "timm"]


@pytest.fixture
def two_metrics():
    """Two metrics registered with what computes them, and nothing else: the largest logit
    (a forward measure) and the mean of the scored map at S (a map measure)."""
    from nc_viz.metrics import specs
    from nc_viz.metrics.measures import Measure

    logit = Measure("zz_logit", "forward", lambda view: {"zz_logit": view.out.logits.float().amax(dim=1)})
    peak = Measure("zz_peak", "map", lambda view: {"zz_peak": float(view.scoremap.mean())})
    specs.register(specs.MetricSpec("zz_max_logit", "mean", "zz_logit", "largest logit", better="higher",
                                    measure=logit))
    specs.register(specs.MetricSpec("zz_peak", "per_image", "zz_peak", measure=peak))
    yield
    specs.unregister("zz_max_logit")
    specs.unregister("zz_peak")


def test_a_metric_registered_with_its_measure_reaches_records_and_report(two_metrics, tmp_path, capsys):
    """records.csv gets both columns with the numbers worked out here from the model and the saved
    maps, and the report the mean of the one with a label."""
    import json

    import numpy as np
    import torch

    from conftest import run
    from nc_viz.models.inputs import load_image
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.evaluate.records import read_records

    data, report, maps = tmp_path / "data", tmp_path / "report", tmp_path / "maps"
    assert run(["make-data", data, "--count", "3", "--seed", "2"], capsys)[0] == 0
    code, out, err = run(["evaluate", data, "--report", report, "--save-maps", maps, "--bootstrap", "5",
                          "--workers", "0", "--batch-size", "1", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "largest logit" in out
    rows = read_records(report / "records.csv")
    assert len(rows) == 6 and all("zz_logit" in r and "zz_peak" in r for r in rows)
    pair = load_model_pair(device="cpu")
    for row in rows:
        loaded = pair.roles[row["role"]]
        x = loaded.meta.preprocess.to_tensor(load_image(data / row["image_id"])).unsqueeze(0)
        with torch.no_grad():
            assert row["zz_logit"] == pytest.approx(float(loaded.model(x).max()), rel=1e-4)
        saved = np.load(maps / row["role"] / f"{row['image_id']}.npy")   # the scored map at S
        assert row["zz_peak"] == pytest.approx(float(saved.mean()))
    results = json.loads((report / "report.json").read_text())["results"]
    for role in ("baseline", "nc"):
        mean = np.mean([r["zz_logit"] for r in rows if r["role"] == role])
        assert results[role]["zz_max_logit"] == pytest.approx(mean)


def test_a_faithfulness_module_in_the_package_is_a_metric_with_no_other_edit(extra_module, tmp_path, capsys):
    """The module's metric is a `faithfulness` name; asked for, its column reaches records.csv with
    the explained class's logit worked out here, and report.json and the table its mean."""
    import json

    import torch

    from conftest import run
    from nc_viz.metrics import faithfulness, specs
    from nc_viz.models.inputs import load_image
    from nc_viz.pair import load_model_pair
    from nc_viz.tasks.evaluate.records import read_records

    table = list(specs.METRICS)
    extra_module("nc_viz.metrics", "zz_logit", FAITHFULNESS_MODULE)
    try:
        specs.load_metrics()   # what importing metrics.specs does
        assert list(faithfulness.FAITHFULNESS)[-1] == "zz_logit"
        assert list(specs.METRICS) == table + ["zz_target_logit"]
        data, report = tmp_path / "data", tmp_path / "report"
        assert run(["make-data", data, "--count", "3", "--seed", "2"], capsys)[0] == 0
        code, out, err = run(["evaluate", data, "--report", report, "--faithfulness", "zz_logit,drop",
                              "--bootstrap", "5", "--workers", "0", "--batch-size", "2", "--device", "cpu"], capsys)
        assert code == 0, err
        rows = read_records(report / "records.csv")
        assert len(rows) == 6 and all("zz_logit" in r and "avg_drop" in r for r in rows)
        pair = load_model_pair(device="cpu")
        for row in rows:   # evaluate explains the true class (its default)
            loaded = pair.roles[row["role"]]
            x = loaded.meta.preprocess.to_tensor(load_image(data / row["image_id"])).unsqueeze(0)
            with torch.no_grad():
                expected = float(loaded.model(x)[0, row["label"]])
            assert row["zz_logit"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
        results = json.loads((report / "report.json").read_text())["results"]
        for role in ("baseline", "nc"):
            mean = sum(r["zz_logit"] for r in rows if r["role"] == role) / 3
            assert results[role]["zz_target_logit"] == pytest.approx(mean)
        assert "explained class's logit" in (report / "report.md").read_text()
    finally:
        faithfulness.unregister("zz_logit")
    assert list(specs.METRICS) == table and "zz_logit" not in faithfulness.FAITHFULNESS
