"""The library API behind the commands: load a model pair, compute maps, build figures.

A notebook user needs three calls::

    pair = load_model_pair("base.pt", "nc.pt")
    result = pair.run(load_batch(paths, pair.preprocess))
    png = encode(compare_figure(result, pair.class_name))   # figures.build, figures.raster
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .cams.compute import CamOutput, compute_cams, display_heatmaps
from .models.checkpoints import LoadedModel, load_checkpoint
from .models.class_names import apply_class_names, read_class_names
from .core.errors import NcVizError, Param, ParameterError, ParameterFailure, UsageError, parameters_renamed
from .models import get_arch
from .models.preprocessing import Preprocess, PreprocessOverride
from .core.roles import ROLES

log = logging.getLogger(__name__)

# nc_viz/pretrained links to the repository's pretrained/ and is copied into the wheel (setup.cfg)
PRETRAINED_DIR = (Path(__file__).resolve().parent / "pretrained").resolve()
DEFAULT_BASELINE = "baseline.pt"
DEFAULT_NC = "nc.pt"


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` picks CUDA when present; `cuda[:N]` without CUDA is a clear error."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ParameterError("device", f"{{param}} {spec}: not a device (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterFailure("device", f"{{param}} {spec}: no CUDA device is available on this machine; "
                                   f"use {{param}} auto (the GPU when there is one) or {{param}} cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParameterFailure("device", f"{{param}} {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise ParameterError("device", f"{{param}} {spec}: use auto, cpu, cuda or cuda:N")
    return device


# Images per forward pass when no batch size is given, per device type. CPU: ResNet-101 pair
# forward passes alone on a 2-core machine ran at 8.8 img/s at batch 8 and 7.0 at batch 16
# (benchmarks/README.md, "Default batch size"). CUDA: on one H200 (bf16, ResNet-101 pair,
# benchmarks/gpu_check.sh) the forward passes alone ran at 1,212-1,651 img/s at batch 64, 1,963-1,976
# at 128 and 2,098-2,117 at 256; 128 takes most of that gain at half of 256's activation memory
# (an out-of-memory halves the batch anyway).
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 128}


def default_batch_size(device: torch.device) -> int:
    """The images per forward pass used when the user gives none, chosen per device type."""
    return DEFAULT_BATCH_SIZE.get(device.type, DEFAULT_BATCH_SIZE["cpu"])


# `batch` on a CPU: small inputs go in larger passes, so that each pass holds about as many input
# pixels as DEFAULT_BATCH_SIZE["cpu"] images of 224 px, at most FIGURE_BATCH_MAX. With the demo
# pair (64 px) a pass of 32 cost 2.9 CPU ms per image against 3.5 for 8 (one thread), and
# `batch` drew 78-81 neurons figures/s against 59-66 (benchmarks/bench_host.py).
FIGURE_BATCH_MAX = 32


def figure_batch_size(device: torch.device, input_size: int) -> int:
    """`batch`'s images per forward pass when the user gives none: `default_batch_size`, except
    on a CPU with inputs under 224 px, where passes hold up to FIGURE_BATCH_MAX images (about
    the input pixels of the default's 224-px pass)."""
    base = default_batch_size(device)
    if device.type != "cpu" or input_size >= 224:
        return base
    return max(base, min(FIGURE_BATCH_MAX, base * 224 * 224 // max(input_size, 1) ** 2))


def default_checkpoints() -> tuple[Path, Path]:
    """The shipped demo pair, used when neither `baseline` nor `nc` is given."""
    root = Path(os.environ.get("NCVIZ_PRETRAINED", PRETRAINED_DIR))
    baseline, nc = root / DEFAULT_BASELINE, root / DEFAULT_NC
    if not (baseline.is_file() and nc.is_file()):
        raise ParameterFailure("baseline", f"{root}: the shipped demo models are missing; "
                                           f"pass {{param}} and {{param:nc}}")
    return baseline, nc


@dataclass
class RoleResult:
    """One model's part of a PairResult: its raw results and what is drawn of them."""

    out: CamOutput
    heat: torch.Tensor                        # (N, S, S) in [0, 1]
    neuron_heat: torch.Tensor | None = None   # (N, K, S, S), with top-k neurons


@dataclass
class PairResult:
    """One batch through both models: inputs, and per role (`baseline`, `nc`) results and heatmaps.

    Every array has the images first; `apply` and `concat` reach all of them, so slicing,
    merging and moving to the CPU are written once for both roles.
    """

    inputs: torch.Tensor          # (N, 3, S, S) normalised, as fed to the models
    pictures: np.ndarray          # (N, S, S, 3) uint8: what the models saw
    roles: dict[str, RoleResult]  # ROLES in order

    def apply(self, fn: Callable[[Any], Any]) -> "PairResult":
        """A PairResult with `fn` applied to every tensor and array (None stays None)."""
        return map_leaves(self, fn)

    def images(self, index: int | slice, copy: bool = False) -> "PairResult":
        """The images `index` (an int keeps a batch of one); `copy`: own its memory."""
        part = slice(index, index + 1) if isinstance(index, int) else index

        def cut(value: Any) -> Any:
            value = value[part]
            return (value.clone() if isinstance(value, torch.Tensor) else value.copy()) if copy else value

        return self.apply(cut)

    @classmethod
    def concat(cls, results: Sequence["PairResult"]) -> "PairResult":
        """One PairResult holding all `results`' images in order."""
        def join(values: list[Any]) -> Any:
            return np.concatenate(values) if isinstance(values[0], np.ndarray) else torch.cat(values)

        return _zip_arrays(list(results), join)


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def map_leaves(value: Any, fn: Callable[[Any], Any], is_leaf: Callable[[Any], bool] = _is_array) -> Any:
    """`value` rebuilt with `fn` applied to each leaf in it (by default each tensor and array),
    through dataclasses and dicts; anything else is kept."""
    if is_leaf(value):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value)(**{f.name: map_leaves(getattr(value, f.name), fn, is_leaf)
                              for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {key: map_leaves(item, fn, is_leaf) for key, item in value.items()}
    return value





def _zip_arrays(values: list[Any], join: Callable[[list[Any]], Any]) -> Any:
    """Like-shaped `values` rebuilt as one, each tensor and array the `join` of theirs."""
    first = values[0]
    if isinstance(first, (torch.Tensor, np.ndarray)):
        return join(values)
    if dataclasses.is_dataclass(first):
        return type(first)(**{f.name: _zip_arrays([getattr(v, f.name) for v in values], join)
                              for f in dataclasses.fields(first)})
    if isinstance(first, dict):
        return {key: _zip_arrays([v[key] for v in values], join) for key in first}
    return first


@dataclass
class ModelPair:
    """A baseline and an NC model that see the same preprocessed input, keyed by role.

    `roles` maps each of ROLES (`baseline`, `nc`), in that order, to its model. The baseline's
    metadata are the pair's: its preprocessing, classes and class names (`baseline`).
    """

    roles: dict[str, LoadedModel]                          # ROLES in order
    preprocess_override: PreprocessOverride | None = None  # input_size, mean, ... (provenance)
    class_names_file: Path | None = None                   # class_names (provenance)

    def __post_init__(self) -> None:
        if tuple(self.roles) != ROLES:
            raise ValueError(f"a pair's roles are {', '.join(ROLES)} in that order, "
                             f"got {', '.join(map(str, self.roles))}")

    def __repr__(self) -> str:
        """One line per model (not the modules themselves)."""
        lines = "".join(f"\n  {role}: {loaded.summary()}" for role, loaded in self.roles.items())
        return f"ModelPair({lines}\n)"

    @property
    def baseline(self) -> LoadedModel:
        """The baseline model, whose metadata (preprocessing, classes) the pair uses."""
        return self.roles["baseline"]

    @property
    def preprocess(self) -> Preprocess:
        """The baseline checkpoint's preprocessing, with the user's overrides."""
        base = self.baseline.meta.preprocess
        return self.preprocess_override.apply(base) if self.preprocess_override else base

    @property
    def device(self) -> torch.device:
        return self.baseline.device

    def class_name(self, index: int) -> str:
        return self.baseline.meta.class_name(index)

    def parse_target(self, text: str | int | None) -> int | None:
        """A class index, or a class name of the checkpoint's metadata."""
        return parse_target(text, self.baseline.meta.class_names, self.baseline.meta.num_classes)

    def run(self, x: torch.Tensor, target: int | torch.Tensor | None = None, method: str = "cam",
            scale: str = "panel", top_k: int = 0, rank_by: str = "contribution",
            precision: str = "fp32") -> PairResult:
        """Both models on one batch; maps and heatmaps computed on the device, returned on the CPU.

        `target`: one class for every image, a per-image (N,) tensor of classes (PREDICTED, -1, for
        an image whose predicted class is explained), or None (each model's prediction).

        `precision` bf16/fp16 runs the forward passes under autocast; the maps are always
        computed in float32 from the (upcast) features.
        """
        x = x.to(self.device, non_blocking=True)
        dtype = autocast_dtype(precision)
        outs = {role: compute_cams(m.model, x, target, method, top_k, rank_by, dtype) for role, m in self.roles.items()}
        size = x.shape[-1]
        heat = dict(zip(ROLES, display_heatmaps(*(outs[r].cam for r in ROLES), size, scale)))
        neuron_heat: dict[str, torch.Tensor | None] = dict.fromkeys(ROLES)
        if top_k:
            neuron_heat.update(zip(ROLES, display_heatmaps(*(outs[r].neuron_maps for r in ROLES), size, scale)))
        pictures = self.preprocess.to_uint8(x)
        result = PairResult(x, pictures, {r: RoleResult(outs[r], heat[r], neuron_heat[r]) for r in ROLES})
        return result.apply(lambda v: v.cpu() if isinstance(v, torch.Tensor) else v)


PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of `precision` (None: plain float32)."""
    try:
        return PRECISIONS[(precision or "fp32").lower()]
    except KeyError:
        raise ParameterError("precision", f"{{param}} {precision}: choose from {', '.join(PRECISIONS)}") from None


def parse_target(text: str | int | None, class_names: Sequence[str] | None, num_classes: int) -> int | None:
    """`None` -> predicted class; an integer string -> that index; else a class name."""
    if text is None or text == "":
        return None
    if isinstance(text, int) or str(text).lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < num_classes:
            raise ParameterError("target", f"{{param}} {index} is out of range: the model has {num_classes} classes")
        return index
    names = [n.lower() for n in (class_names or [])]
    if str(text).lower() in names:
        return names.index(str(text).lower())
    import difflib

    close = difflib.get_close_matches(str(text).lower(), names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ParameterError("target", f"{{param}} {text!r}: no class of that name{hint}")


def checkpoint_paths(baseline: str | os.PathLike | None, nc: str | os.PathLike | None) -> tuple[Path, Path]:
    """The (baseline, NC) checkpoint files `load_model_pair` reads: the shipped pair for neither."""
    if baseline is None and nc is None:
        return default_checkpoints()
    if baseline is None or nc is None:
        raise ParameterError("baseline", "give both {param} and {param:nc}, or neither (the shipped demo pair)")
    return Path(baseline), Path(nc)


@dataclass(frozen=True)
class PairSpec:
    """Which two models a run loads, and how: what `load_model_pair` takes, as one record.

    Neither checkpoint: the shipped demo pair. `arch`/`nc_arch`: the architectures of
    checkpoints without metadata; `class_names`: a file with one name per line; `preprocess`:
    what overrides the checkpoint's preprocessing (None: nothing)."""

    baseline: str | os.PathLike | None = None
    nc: str | os.PathLike | None = None
    arch: str | None = None
    nc_arch: str | None = None
    device: str = "auto"
    class_names: str | os.PathLike | None = None
    preprocess: PreprocessOverride | None = None

    def checkpoints(self) -> tuple[Path, Path]:
        """The (baseline, NC) checkpoint files this spec loads."""
        return checkpoint_paths(self.baseline, self.nc)


def load_model_pair(baseline: PairSpec | str | os.PathLike | None = None, nc: str | os.PathLike | None = None,
                    arch: str | None = None, nc_arch: str | None = None,
                    device: str = "auto", class_names: str | os.PathLike | None = None,
                    preprocess: PreprocessOverride | None = None) -> ModelPair:
    """Load both checkpoints (the shipped demo pair when neither is given).

    Takes a `PairSpec`, or its fields as arguments: `load_model_pair("base.pt", "nc.pt", device="cpu")`.
    `class_names`: a file with one name per line, for checkpoints without names;
    `preprocess`: options that override the checkpoint's preprocessing. Both are checked before
    any model is loaded (the class count right after).
    """
    if isinstance(baseline, PairSpec):
        if (nc, arch, nc_arch, device, class_names, preprocess) != (None, None, None, "auto", None, None):
            raise UsageError("load_model_pair takes a PairSpec or the models' arguments, not both")
        spec = baseline
        baseline, nc, arch, nc_arch = spec.baseline, spec.nc, spec.arch, spec.nc_arch
        device, class_names, preprocess = spec.device, spec.class_names, spec.preprocess
    baseline, nc = checkpoint_paths(baseline, nc)
    names = read_class_names(class_names) if class_names is not None else None
    if preprocess is not None:
        preprocess.check()
    dev = resolve_device(device)
    base = load_checkpoint(baseline, arch=arch, device=dev)
    with parameters_renamed(arch="nc_arch"):  # the second model's `arch` is this function's `nc_arch`
        other = load_checkpoint(nc, arch=nc_arch, device=dev)
    if preprocess is not None:
        preprocess.apply(base.meta.preprocess)  # a `resize` below the checkpoint's input size fails here
    _check_compatible(base, other, plain_on_purpose=nc_arch is not None and not get_arch(nc_arch).nc,
                      override=preprocess)
    if names is not None:
        apply_class_names((base, other), names, class_names)
    return ModelPair({"baseline": base, "nc": other}, preprocess, Path(class_names) if class_names is not None else None)


def _check_compatible(base: LoadedModel, other: LoadedModel, plain_on_purpose: bool = False,
                      override: PreprocessOverride | None = None) -> None:
    """Same classes (an error otherwise); one warning for a pair that looks mixed up.

    `plain_on_purpose`: the user named a plain architecture as `nc_arch` (two baselines, which
    may differ). `override`: the user's preprocessing options, which apply to both."""
    a, b = base.meta, other.meta
    if a.num_classes != b.num_classes:
        raise NcVizError(f"{base.path} has {a.num_classes} classes, {other.path} has {b.num_classes}: "
                         f"the two models must share their classes")
    if not _same_preprocess(a.preprocess, b.preprocess, override):
        log.warning("the two checkpoints differ in preprocessing (%s); both get the baseline's",
                    _preprocess_difference(a.preprocess, b.preprocess))
    base_spec, other_spec = get_arch(a.arch), get_arch(b.arch)
    if base_spec.base != other_spec.base and not plain_on_purpose:
        log.warning("%s is %s and %s is %s: not a baseline and the same network with NC blocks "
                    "(their base architectures differ)", base.path, a.arch, other.path, b.arch)
        return
    base_nc, other_nc = base_spec.nc, other_spec.nc
    if base_nc and not other_nc:
        log.warning("%s has NC blocks and %s has none: are %s and %s swapped?", base.path, other.path,
                    Param("baseline"), Param("nc"))
    elif base_nc:
        log.warning("%s (%s) has NC blocks too: both models are NC models", base.path, Param("baseline"))
    elif not other_nc and not plain_on_purpose:
        log.warning("%s (%s) has no NC blocks: comparing two plain networks (say %s %s to "
                    "silence this)", other.path, Param("nc"), Param("nc_arch"), b.arch)


def _preprocess_difference(a: Preprocess, b: Preprocess) -> str:
    """The fields two preprocessings differ in, e.g. `crop_pct 0.875 vs 0.95`."""
    names = ("input_size", "mean", "std", "crop_pct", "center_crop")
    return ", ".join(f"{n} {getattr(a, n)} vs {getattr(b, n)}" for n in names if getattr(a, n) != getattr(b, n))


def _same_preprocess(a: Preprocess, b: Preprocess, override: PreprocessOverride | None) -> bool:
    """Whether the two models would be fed alike, the user's options applied to both."""
    if override is None:
        return a == b
    try:
        return override.apply(a) == override.apply(b)
    except UsageError:  # the options do not fit the second model's input size
        return False


# the saved-maps arrays of each role, `<role>_<name>`, in this order: name -> (value, dtype)
ROLE_ARRAYS: dict[str, tuple[Callable[[RoleResult], torch.Tensor], type]] = {
    "logits": (lambda r: r.out.logits, np.float32),
    "class": (lambda r: r.out.target, np.int64),
    "cam": (lambda r: r.out.cam, np.float32),
    "heatmap": (lambda r: r.heat, np.float32),
}
NEURON_ARRAYS: dict[str, tuple[Callable[[RoleResult], torch.Tensor], type]] = {  # with top-k neurons
    "neurons": (lambda r: r.out.neuron_maps, np.float32),
    "neuron_ids": (lambda r: r.out.neuron_ids, np.int64),
    "contrib": (lambda r: r.out.neuron_scores, np.float32),
}


def maps_arrays(results: Sequence[PairResult]) -> dict[str, np.ndarray]:
    """The arrays of a saved-maps .npz, images in order (see the README for each key)."""
    def cat(values: list[torch.Tensor], dtype: type = np.float32) -> np.ndarray:
        return torch.cat(values).numpy().astype(dtype, copy=False)

    arrays = {"input": cat([r.inputs for r in results])}
    tables = [ROLE_ARRAYS]
    if results and results[0].roles[ROLES[0]].out.neuron_ids is not None:
        tables.append(NEURON_ARRAYS)
    for table in tables:
        for name, (get, dtype) in table.items():
            for role in ROLES:
                arrays[f"{role}_{name}"] = cat([get(r.roles[role]) for r in results], dtype)
    return arrays
