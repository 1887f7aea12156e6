"""`ncviz sweep`: the baseline and the NC model at each reduction ratio alpha, for each seed.

Each run trains in `OUT/runs/<name>/` with `recipe.train_run` (resumable, skipped when
finished); under torchrun every rank takes its share of the runs, and rank 0 writes
`table.md`, `table.tex`, `table.json` and `accuracy_vs_alpha.png`/`.pdf` once all are done.

A folder holds the runs of one recipe: everything but the alphas and the seeds (architecture,
data, placement, training knobs) is digested into the tag that `OUT/sweep.json` and every run's
`result.json` carry. A rerun with more alphas or seeds trains only the runs the folder lacks,
and the table covers every finished run of the folder; a sweep of another recipe is refused.
`sweep_merge` combines folders of one recipe.
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
from .sweep_table import PLOT_STEM, TABLE_JSON, TABLE_MD, TABLE_TEX, write_plot, write_table  # noqa: F401
from .sweep_table import json_bytes as _json_bytes

log = logging.getLogger(__name__)

SETTINGS_NAME, RECIPE_NAME = "sweep.json", "recipe.json"
# The supplement's Table 1: CIFAR-100 test accuracy (%) of ResNet-20 with NC blocks of ratio alpha.
PAPER_TABLE1 = {1: 69.2, 2: 69.06, 4: 69.23, 8: 69.34, 16: 69.05}
PAPER_SOURCE = "the paper's Table 1 (supplement): CIFAR-100, ResNet-20, test accuracy %"


@dataclass(frozen=True)
class SweepSettings:
    """What decides a sweep's results (the device and the rank count do not)."""

    arch: str = "resnet20"
    reductions: tuple[int, ...] = (1, 2, 4, 8, 16)
    seeds: int = 3
    first_seed: int = 0
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
        if self.first_seed < 0:
            raise ParameterError("first_seed", f"{{param}}: not negative, got {self.first_seed}")
        self.recipe.check()

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def recipe_dict(self) -> dict[str, Any]:
        """What every run of the sweep shares: all settings but the alphas and the seeds."""
        d = {k: getattr(self, k) for k in ("arch", "data", "placement")}
        if self.data == "synthetic":
            d.update(train_count=self.train_count, test_count=self.test_count, size=self.size)
        return {**d, "recipe": self.recipe.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {**self.recipe_dict(), "reductions": list(self.reductions), "seeds": self.seed_list}

    @property
    def tag(self) -> str:
        """A short digest of `recipe_dict` (not of the alphas and seeds): the runs of one folder share it."""
        return hashlib.sha256(json.dumps(self.recipe_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_recipe_dict(cls, d: dict[str, Any]) -> "SweepSettings":
        """The settings `recipe_dict` wrote (alphas and seeds left at their defaults); TypeError,
        ValueError or KeyError when `d` is not such a dict."""
        recipe = d["recipe"]
        if not isinstance(recipe, dict):
            raise TypeError("recipe is not an object")
        synthetic = {k: d[k] for k in ("train_count", "test_count", "size") if k in d}
        return cls(arch=d["arch"], data=d["data"], placement=d["placement"], recipe=Recipe.from_dict(recipe),
                   **synthetic)


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
    return [Run(r, seed) for seed in settings.seed_list for r in (None, *settings.reductions)]


def run_of(result: dict[str, Any]) -> Run | None:
    """The run a result.json says it is, or None when its alpha or seed is not one (an int >= 1 or
    null; an int >= 0)."""
    reduction, seed = result.get("reduction"), result.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        return None
    if reduction is not None and not (isinstance(reduction, int) and not isinstance(reduction, bool)
                                      and reduction >= 1):
        return None
    return Run(reduction, seed)


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


def check_data(settings: SweepSettings, data_dir: str | Path | None) -> None:
    """Before anything is written: the data the runs train on are there (CIFAR-100's files)."""
    if settings.data == "cifar100":
        from ...datasets.cifar import check_folder

        if not data_dir:
            raise ParameterError("data", "{param} cifar100 needs {param:data_dir} (torchvision's CIFAR-100 layout)")
        check_folder(data_dir)


def claim_folder(out: Path, settings: SweepSettings, rank: int, runs: Sequence[Run] | None = None) -> None:
    """Write sweep.json (the recipe's tag and settings, every alpha and seed asked for so far: those
    of `settings`, or of `runs` when given) and recipe.json, or refuse a folder that holds a sweep
    of another recipe, naming what differs."""
    path = out / SETTINGS_NAME
    if runs is None:
        reductions, seeds = set(settings.reductions), set(settings.seed_list)
    else:
        reductions, seeds = {r.reduction for r in runs if r.reduction is not None}, {r.seed for r in runs}
    if os.path.lexists(path):
        previous = read_json_object(path, "sweep settings file",
                                    fix="use another -o folder, or remove the file to claim the folder")
        if previous.get("tag") != settings.tag:
            raise UsageError(f"{out}: holds a sweep of other settings ({settings_difference(previous, settings)}); "
                             f"a folder takes more alphas and seeds of one recipe: use another -o folder or "
                             f"the same settings")
        reductions |= _int_set(previous.get("reductions"), 1)
        seeds |= _int_set(previous.get("seeds"), 0)
    if rank == 0:
        atomic_write_bytes(out / RECIPE_NAME, _json_bytes(settings.recipe.to_dict()))
        atomic_write_bytes(path, _json_bytes({"tag": settings.tag, **settings.recipe_dict(),
                                              "reductions": sorted(reductions), "seeds": sorted(seeds)}))


def _int_set(value: Any, low: int) -> set[int]:
    """The ints >= `low` of a JSON list (anything else in a sweep.json someone edited is left out)."""
    if not isinstance(value, list):
        return set()
    return {v for v in value if isinstance(v, int) and not isinstance(v, bool) and v >= low}


def settings_difference(previous: dict[str, Any], settings: SweepSettings) -> str:
    """E.g. `recipe.lr: 0.1 there, 0.05 here`: the first settings in which a sweep.json differs."""
    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix.rstrip("."): d}
        return {k: v for key, value in d.items() for k, v in flat(value, f"{prefix}{key}.").items()}

    ours, theirs = flat(settings.recipe_dict()), flat(previous)
    differ = [k for k in ours if k not in theirs or theirs[k] != ours[k]]
    if not differ:
        return (f"tag {str(previous.get('tag'))[:20]!r}, these are {settings.tag}: the same settings under an "
                f"older tag scheme, from an earlier ncviz; start a new folder")
    shown = [f"{k}: {json.dumps(theirs.get(k))[:40] if k in theirs else 'absent'} there, "
             f"{json.dumps(ours[k])} here" for k in differ[:3]]
    return "; ".join(shown) + (f"; {len(differ) - 3} more" if len(differ) > 3 else "")


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
    check_data(settings, data_dir)
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
            everything = {**finished_runs(out, settings), **results}  # other ranks' runs as they reported them
            table = build_table(settings, list(everything.values()), data_dir)
            write_table(out, table)
            write_plot(out, table)
    return SweepResult(out, results, table)


def finished_runs(out: Path, settings: SweepSettings) -> dict[str, dict[str, Any]]:
    """Every finished run in `out/runs` of this folder's recipe (whatever alphas and seeds a
    sweep asked for), by name, in name order; each result checked (`recipe.read_result`), a
    result of another run than its folder's an NcVizError."""
    from .recipe import read_result

    runs_dir, found = out / "runs", {}
    names = sorted(e.name for e in os.scandir(runs_dir) if e.is_dir()) if runs_dir.is_dir() else []
    for name in names:
        done = read_result(runs_dir / name)
        if done is None:
            continue
        run = run_of(done)
        if run is None or run.name != name:
            _another_run(runs_dir / name, done)
        if done.get("tag") == settings.tag:
            found[name] = {**done, "variant": run.variant}
    return found


def _train_runs(out: Path, settings: SweepSettings, runs: Sequence[Run], data_dir: str | Path | None,
                device: torch.device, on_event: Callable[[str, dict[str, Any]], None] | None) -> dict[str, dict]:
    """Train `runs` one after another on `device` (the data are loaded once, only if needed)."""
    from .recipe import read_result

    results, data = {}, None
    for run in runs:
        done = read_result(out / "runs" / run.name)
        if done is not None and run_of(done) != run:
            _another_run(out / "runs" / run.name, done)
        if done is None or done.get("tag") != settings.tag:
            if data is None:
                data = DataOnDevice.from_sets(*load_sets(settings, data_dir), device)
            if on_event:
                on_event("start", {"run": run.name, "epochs": settings.recipe.epochs})
            hook = (lambda row, run=run: on_event("epoch", {"run": run.name, **row})) if on_event else None
            done = train_run(out / "runs" / run.name, model_spec(settings, run), settings.recipe, data, device,
                             settings.tag, hook)
        if run_of(done) != run:
            _another_run(out / "runs" / run.name, done)
        results[run.name] = {**done, "variant": run.variant}
        if on_event:
            on_event("done", results[run.name])
    return results


def _another_run(run_dir: Path, done: dict[str, Any]) -> None:
    raise NcVizError(f"{run_dir / 'result.json'}: the result of another run (alpha "
                     f"{str(done.get('reduction'))[:20]}, seed {str(done.get('seed'))[:20]}) in the folder of "
                     f"{run_dir.name}; remove that folder to train the run again")


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


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation; no spread (None) for a single value."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def build_table(settings: SweepSettings, results: Sequence[dict[str, Any]], data_dir: str | Path | None = None
                ) -> dict:
    """Per variant found in `results`: mean and std of test accuracy (%) over its seeds, parameters,
    FLOPs, and the paper's number where it applies (CIFAR-100 and ResNet-20, as the paper's table)."""
    num_classes = 100 if settings.data == "cifar100" else _synthetic_classes()
    present = {r["reduction"] for r in results}
    paper = settings.data == "cifar100" and settings.arch == "resnet20"
    rows = []
    for reduction in [None] * (None in present) + sorted(r for r in present if r is not None):
        mine = sorted((r for r in results if r["reduction"] == reduction), key=lambda r: r.get("seed") or 0)
        accs = [100 * r["test_accuracy"] for r in mine]
        mean, std = _mean_std(accs)
        params, flops = model_cost(settings, Run(reduction, 0), num_classes)
        rows.append({"variant": "baseline" if reduction is None else "nc", "alpha": reduction,
                     "accuracy_mean": round(mean, 4), "accuracy_std": None if std is None else round(std, 4),
                     "seeds": len(accs), "seed_list": [r.get("seed") for r in mine],
                     "accuracies": [round(a, 4) for a in accs], "params": params, "flops": flops,
                     "paper": PAPER_TABLE1.get(reduction) if paper and reduction is not None else None})
    seeds = sorted({r.get("seed") for r in results if isinstance(r.get("seed"), int)})
    return {"settings": {"tag": settings.tag, **settings.recipe_dict(),
                         "reductions": sorted(r for r in present if r is not None), "seeds": seeds},
            "rows": rows, "paper_source": PAPER_SOURCE if paper else None}


def _synthetic_classes() -> int:
    from ...datasets.synth import CLASS_NAMES

    return len(CLASS_NAMES)
