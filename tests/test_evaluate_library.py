"""`evaluate` from the library, without click: the same files and numbers as `ncviz evaluate`; the
model pair's settings as one typed record (`PairSpec`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nc_viz.cli import main
from nc_viz.core.errors import ParameterError, UsageError
from nc_viz.models.preprocessing import PreprocessOverride
from nc_viz.pair import PairSpec, load_model_pair
from nc_viz.tasks.evaluate import EvalData, EvalOutputs, run_evaluate
from nc_viz.tasks.guards import model_inputs

LIBRARY_RUN = textwrap.dedent("""
    import json, sys
    sys.modules["click"] = None   # importing click anywhere now fails
    from nc_viz.pair import PairSpec
    from nc_viz.tasks.evaluate import EvalData, EvalEvents, EvalOptions, EvalOutputs, run_evaluate

    class Recorder(EvalEvents):
        def __init__(self):
            self.lines, self.written, self.started, self.advanced = [], [], None, 0
        def say(self, text):
            self.lines.append(text)
        def start(self, total):
            self.started = total
        def advance(self, images):
            self.advanced += images
        def wrote(self, path):
            self.written.append(str(path))

    data, report, maps = sys.argv[1:4]
    events = Recorder()
    evaluation = run_evaluate(EvalData(data + "/wsol", "wsol", images=data),
                              EvalOptions(top_k=4, bootstrap=10, seed=3, workers=0), PairSpec(device="cpu"),
                              EvalOutputs(report=report, maps=maps), events)
    print(json.dumps({"lines": events.lines, "written": events.written, "started": events.started,
                      "advanced": events.advanced, "images": evaluation.images,
                      "results": evaluation.results}, allow_nan=True))
""")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("eval-lib") / "d"
    assert main(["make-data", str(data), "--count", "4", "--seed", "3"]) == 0
    return data


def test_run_evaluate_without_click_writes_what_the_cli_writes(made, tmp_path, capsys):
    lib_report, lib_maps = tmp_path / "lib", tmp_path / "lib-maps"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", LIBRARY_RUN, str(made), str(lib_report), str(lib_maps)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])

    cli_report, cli_maps = tmp_path / "cli", tmp_path / "cli-maps"
    code = main(["evaluate", str(made / "wsol"), "--format", "wsol", "--images", str(made), "--top", "4",
                 "--bootstrap", "10", "--seed", "3", "--workers", "0", "--device", "cpu",
                 "--report", str(cli_report), "--save-maps", str(cli_maps)])
    cli = capsys.readouterr()
    assert code == 0

    # the same numbers, intervals, data and protocol records; only the records' path differs
    lib_json, cli_json = (json.loads((folder / "report.json").read_text()) for folder in (lib_report, cli_report))
    assert lib_json.pop("records") == str(lib_report / "records.csv")
    assert cli_json.pop("records") == str(cli_report / "records.csv")
    assert lib_json == cli_json and lib_json["images"] == told["images"] == 4
    for role in ("baseline", "nc"):
        for key in ("accuracy", "max_box_acc", "energy", "topk_corr"):
            assert told["results"][role][key] == pytest.approx(cli_json["results"][role][key], rel=1e-12)
    assert (lib_report / "records.csv").read_bytes() == (cli_report / "records.csv").read_bytes()
    lib_maps_files, cli_maps_files = (sorted(p.relative_to(folder) for p in folder.rglob("*.npy"))
                                      for folder in (lib_maps, cli_maps))
    assert len(lib_maps_files) == 8 and lib_maps_files == cli_maps_files
    for name in lib_maps_files:
        np.testing.assert_array_equal(np.load(lib_maps / name), np.load(cli_maps / name))

    # what the library told its events is what the CLI echoed
    cli_err = cli.err.splitlines()
    assert told["lines"] == [f"{made / 'wsol'}: wsol layout, 4 images"] and told["lines"][0] in cli_err
    assert [line.replace(str(lib_report), "R") for line in told["written"]] == \
        [line[len("wrote "):].replace(str(cli_report), "R") for line in cli_err if line.startswith("wrote ")]
    assert told["started"] == 4 and told["advanced"] == 4
    assert "| metric | better | n | baseline | NC |" in cli.out


def test_run_evaluate_refuses_a_resize_before_any_work(made, tmp_path):
    report = tmp_path / "r"
    with pytest.raises(ParameterError, match="resize does not apply") as caught:
        run_evaluate(EvalData(made), pair_spec=PairSpec(device="cpu", preprocess=PreprocessOverride(resize=80)),
                     outputs=EvalOutputs(report=report))
    assert caught.value.param == "resize" and not report.exists()


def test_load_model_pair_takes_a_pair_spec_as_it_takes_its_arguments(small_pair, tmp_path):
    base, nc = small_pair
    names = tmp_path / "names.txt"
    names.write_text("".join(f"class {i}\n" for i in range(5)))
    override = PreprocessOverride(input_size=40, no_crop=True)
    spec = PairSpec(base, nc, device="cpu", class_names=names, preprocess=override)
    by_spec = load_model_pair(spec)
    by_args = load_model_pair(base, nc, device="cpu", class_names=names, preprocess=override)
    assert by_spec.preprocess == by_args.preprocess and by_spec.preprocess.input_size == 40
    assert by_spec.class_name(3) == by_args.class_name(3) == "class 3"
    assert by_spec.class_names_file == names and by_spec.preprocess_override == override
    x = torch.rand(2, 3, 40, 40)
    a, b = by_spec.run(x, top_k=2), by_args.run(x, top_k=2)
    for role in ("baseline", "nc"):
        torch.testing.assert_close(a.roles[role].heat, b.roles[role].heat, rtol=0, atol=0)
    # the files a spec reads, which no output may replace
    assert model_inputs(spec) == [(Path(base), "the baseline checkpoint"), (Path(nc), "the NC checkpoint"),
                                  (names, "the class-names file")]
    with pytest.raises(UsageError, match="PairSpec or the models' arguments, not both"):
        load_model_pair(spec, device="cpu")
