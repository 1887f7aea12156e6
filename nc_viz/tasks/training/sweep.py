"""`ncviz sweep`: the baseline and the NC model at each reduction ratio alpha, for each seed.

Each run trains in `OUT/runs/<name>/` with `recipe.train_run` (resumable, skipped when
finished); under torchrun every rank takes its share of the runs, and rank 0 writes
`table.md`, `table.json` and `accuracy_vs_alpha.png`/`.pdf` once all are done. The settings
are written to `OUT/sweep.json`; a sweep of other settings into the same folder is refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ...engine.device import rank_device
from ...engine.distributed import Shard, gather_records, process_group
from ...core.errors import NcVizError, ParameterError, UsageError
from ...core.io import atomic_write_bytes
from ...core.lock import FolderLock
from .recipe import DataOnDevice, ModelSpec, Recipe, resolve_training_device, train_run
from ...core.files import read_json_object

log = logging.getLogger(__name__)

SETTINGS_NAME, RECIPE_NAME = "sweep.json", "recipe.json"
TABLE_MD, TABLE_JSON, PLOT_STEM = "table.md", "table.json", "accuracy_vs_alpha"
# The supplement's Table 1: CIFAR-100 test accuracy (%) of ResNet-20 with NC blocks of ratio alpha.
PAPER_TABLE1 = {1: 69.2, 2: 69.06, 4: 69.23, 8: 69.34, 16: 69.05}


@dataclass(frozen=True)
class SweepSettings:
    """What decides a sweep's results (the device and the rank count do not)."""

    arch: str = "resnet20"
    reductions: tuple[int, ...] = (1, 2, 4, 8, 16)
    seeds: int = 3
    data: str = "synthetic"
    placement: str = "stages"
    train_count: int = 2000        # synthetic only
    test_count: int = 500          # synthetic only
    size: int = 32                 # synthetic only (CIFAR is 32)
    recipe: Recipe = field(default_factory=Recipe)

    def check(self) -> None:
        """Refuse impossible settings, naming the option."""
        from ...models import get_arch

        try:
            spec = get_arch(self.arch)
        except ValueError as exc:
            raise ParameterError("arch", f"{{param}}: {exc}") from exc
        if spec.nc:
            raise ParameterError("arch", f"{{param}} {self.arch}: give the plain architecture ({spec.base}); "
                                 f"its _nc twin is trained at each alpha")
        distinct = len(set(self.reductions)) == len(self.reductions)
        if not self.reductions or any(r < 1 for r in self.reductions) or not distinct:
            raise ParameterError("reductions", f"{{param}}: distinct positive integers, got {list(self.reductions)}")
        if self.seeds < 1:
            raise ParameterError("seeds", f"{{param}}: at least 1, got {self.seeds}")
        self.recipe.check()

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("arch", "data", "placement", "seeds")}
        d["reductions"] = list(self.reductions)
        if self.data == "synthetic":
            d.update(train_count=self.train_count, test_count=self.test_count, size=self.size)
        return {**d, "recipe": self.recipe.to_dict()}

    @property
    def tag(self) -> str:
        """A short digest of the settings."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Run:
    """One model of the sweep: the baseline (reduction None) or NC at one alpha, one seed."""

    reduction: int | None
    seed: int

    @property
    def name(self) -> str:
        return f"baseline-s{self.seed}" if self.reduction is None else f"nc-a{self.reduction}-s{self.seed}"

    @property
    def variant(self) -> str:
        return "baseline" if self.reduction is None else f"alpha={self.reduction}"


def plan_runs(settings: SweepSettings) -> list[Run]:
    """Every run, seed by seed: the baseline, then each alpha."""
    return [Run(r, seed) for seed in range(settings.seeds) for r in (None, *settings.reductions)]


def model_spec(settings: SweepSettings, run: Run) -> ModelSpec:
    """The model a run trains, with the data set's input size and normalisation."""
    from .train import synthetic_stem_stride, training_preprocess

    cifar = settings.data == "cifar100"
    arch = settings.arch if run.reduction is None else f"{settings.arch}_nc"
    stem_stride = 1 if cifar else synthetic_stem_stride(settings.arch)
    return ModelSpec(arch=arch, seed=run.seed, stem_stride=stem_stride,
                     preprocess=training_preprocess(settings.data, settings.size),
                     reduction=run.reduction, placement=settings.placement,
                     extra={"data": settings.data, "sweep": settings.tag})


def load_sets(settings: SweepSettings, data_dir: str | Path | None) -> tuple[Any, Any]:
    """Train and test `ImageSet`s: CIFAR-100 from disk, or the synthetic shapes."""
    from .train import cifar100_set, synthetic_set

    if settings.data == "cifar100":
        if not data_dir:
            raise ParameterError("data", "{param} cifar100 needs {param:data_dir} (torchvision's CIFAR-100 layout)")
        return cifar100_set(data_dir, True), cifar100_set(data_dir, False)
    return (synthetic_set(settings.train_count, 0, settings.size),
            synthetic_set(settings.test_count, 1000, settings.size))


# ----------------------------------------------------------------------------- the folder's settings


def claim_folder(out: Path, settings: SweepSettings, rank: int) -> None:
    """Write sweep.json and recipe.json, or refuse a folder that holds a sweep of other settings."""
    path = out / SETTINGS_NAME
    if os.path.lexists(path):
        previous = read_json_object(path, "sweep settings file",
                                   fix="use another -o folder, or remove the file to claim the folder").get("tag")
        if previous != settings.tag:
            raise UsageError(f"{out}: holds a sweep of other settings (tag {previous}, these are {settings.tag}); "
                             f"use another -o folder or the same settings")
        return
    if rank == 0:
        atomic_write_bytes(out / RECIPE_NAME, _json_bytes(settings.recipe.to_dict()))
        atomic_write_bytes(path, _json_bytes({"tag": settings.tag, **settings.to_dict()}))


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------- running


@dataclass
class SweepResult:
    """What a sweep produced (rank 0 has the table; every rank has all the runs' results)."""

    output_dir: Path
    results: dict[str, dict[str, Any]]
    table: dict[str, Any] | None


def run_sweep(settings: SweepSettings, out: str | Path, data_dir: str | Path | None = None, device: str = "auto",
              on_event: Callable[[str, dict[str, Any]], None] | None = None) -> SweepResult:
    """Train this rank's share of the runs, then (rank 0) write the table and the plot."""
    settings.check()
    out = Path(out)
    shard = Shard.from_env()
    dev = resolve_training_device(rank_device(device, shard))
    runs = plan_runs(settings)
    with process_group(shard), FolderLock(out, shard.rank, command="sweep") as lock:
        mine: dict[str, dict[str, Any]] = {}
        failure: Exception | None = None
        try:  # a rank that fails still reaches gather_records, so that no rank waits for it forever
            out.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            claim_folder(out, settings, shard.rank)
            mine = _train_runs(out, settings, shard.take(runs), data_dir, dev, on_event)
        except Exception as exc:  # noqa: BLE001 - handed to gather_records, which raises it
            failure = exc
        results = gather_records(mine, shard, failure)
        table = None
        if shard.rank == 0:
            table = build_table(settings, [results[r.name] for r in runs], data_dir)
            write_table(out, table)
            write_plot(out, table)
    return SweepResult(out, results, table)


def _train_runs(out: Path, settings: SweepSettings, runs: Sequence[Run], data_dir: str | Path | None,
                device: torch.device, on_event: Callable[[str, dict[str, Any]], None] | None) -> dict[str, dict]:
    """Train `runs` one after another on `device` (the data are loaded once, only if needed)."""
    from .recipe import read_result

    results, data = {}, None
    for run in runs:
        done = read_result(out / "runs" / run.name)
        if done is None or done.get("tag") != settings.tag:
            if data is None:
                data = DataOnDevice.from_sets(*load_sets(settings, data_dir), device)
            if on_event:
                on_event("start", {"run": run.name, "epochs": settings.recipe.epochs})
            hook = (lambda row, run=run: on_event("epoch", {"run": run.name, **row})) if on_event else None
            done = train_run(out / "runs" / run.name, model_spec(settings, run), settings.recipe, data, device,
                             settings.tag, hook)
        if (done.get("reduction"), done.get("seed")) != (run.reduction, run.seed):
            raise NcVizError(f"{out / 'runs' / run.name / 'result.json'}: the result of another run (alpha "
                             f"{done.get('reduction')}, seed {done.get('seed')}) in the folder of {run.name}; "
                             f"remove that folder to train the run again")
        results[run.name] = {**done, "variant": run.variant}
        if on_event:
            on_event("done", results[run.name])
    return results


# ----------------------------------------------------------------------------- table and plot


def model_cost(settings: SweepSettings, run: Run, num_classes: int) -> tuple[int, int]:
    """Parameters and FLOPs per image (torch's FLOP counter, one input at the nominal size)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = model_spec(settings, run)
    model = spec.build(num_classes).eval()
    x = torch.zeros(1, 3, spec.input_size, spec.input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return sum(p.numel() for p in model.parameters()), int(counter.get_total_flops())


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def build_table(settings: SweepSettings, results: Sequence[dict[str, Any]], data_dir: str | Path | None) -> dict:
    """Per variant: mean and std of test accuracy (%) over seeds, parameters, FLOPs, the paper's number."""
    num_classes = 100 if settings.data == "cifar100" else _synthetic_classes()
    rows = []
    for reduction in (None, *settings.reductions):
        accs = [100 * r["test_accuracy"] for r in results if r["reduction"] == reduction]
        mean, std = _mean_std(accs)
        params, flops = model_cost(settings, Run(reduction, 0), num_classes)
        rows.append({"variant": "baseline" if reduction is None else "nc", "alpha": reduction,
                     "accuracy_mean": round(mean, 4), "accuracy_std": round(std, 4), "seeds": len(accs),
                     "accuracies": [round(a, 4) for a in accs], "params": params, "flops": flops,
                     "paper": PAPER_TABLE1.get(reduction) if reduction is not None else None})
    return {"settings": {"tag": settings.tag, **settings.to_dict()}, "rows": rows,
            "paper_source": "the paper's Table 1 (supplement): CIFAR-100, ResNet-20, test accuracy %"}


def _synthetic_classes() -> int:
    from ...datasets.synth import CLASS_NAMES

    return len(CLASS_NAMES)


def write_table(out: Path, table: dict) -> None:
    """table.json and table.md."""
    atomic_write_bytes(out / TABLE_JSON, _json_bytes(table))
    atomic_write_bytes(out / TABLE_MD, render_markdown(table).encode("utf-8"))


def render_markdown(table: dict) -> str:
    """The table as Markdown, the paper's numbers beside ours."""
    s = table["settings"]
    data = "CIFAR-100" if s["data"] == "cifar100" else f"synthetic shapes ({s.get('train_count')} training images)"
    lines = [f"# {s['arch']} with NC blocks, by reduction ratio alpha: {data}", "",
             f"Test accuracy (%), mean +- std over {s['seeds']} seed(s); {s['recipe']['epochs']} epochs. "
             f"Paper: {table['paper_source']}.", "",
             "| model | alpha | accuracy (%) | paper (%) | parameters | MFLOPs / image |",
             "|---|---|---|---|---|---|"]
    for row in table["rows"]:
        alpha = "-" if row["alpha"] is None else str(row["alpha"])
        paper = "-" if row["paper"] is None else f"{row['paper']:.2f}"
        lines.append(f"| {row['variant']} | {alpha} | {row['accuracy_mean']:.2f} +- {row['accuracy_std']:.2f} "
                     f"| {paper} | {row['params']:,} | {row['flops'] / 1e6:.2f} |")
    return "\n".join(lines) + "\n"


def write_plot(out: Path, table: dict) -> None:
    """accuracy_vs_alpha.png and .pdf: NC accuracy against alpha with error bars, the baseline as a line."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    nc = [r for r in table["rows"] if r["alpha"] is not None]
    base = next(r for r in table["rows"] if r["alpha"] is None)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.errorbar([r["alpha"] for r in nc], [r["accuracy_mean"] for r in nc], yerr=[r["accuracy_std"] for r in nc],
                marker="o", capsize=4, label=f"{table['settings']['arch']}_nc (ours)")
    ax.axhline(base["accuracy_mean"], color="grey", linestyle="--", label="baseline (ours)")
    if base["accuracy_std"]:
        ax.axhspan(base["accuracy_mean"] - base["accuracy_std"], base["accuracy_mean"] + base["accuracy_std"],
                   color="grey", alpha=0.15)
    if table["settings"]["data"] == "cifar100":
        paper = [r for r in nc if r["paper"] is not None]
        ax.plot([r["alpha"] for r in paper], [r["paper"] for r in paper], "s:", color="tab:red",
                label="paper, Table 1 (CIFAR-100)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([r["alpha"] for r in nc], [str(r["alpha"]) for r in nc])
    ax.set_xlabel("reduction ratio alpha")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    for suffix, metadata in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        buffer = _figure_bytes(fig, suffix[1:], metadata)
        atomic_write_bytes(out / f"{PLOT_STEM}{suffix}", buffer)


def _figure_bytes(fig: Any, fmt: str, metadata: dict) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
    return buffer.getvalue()
