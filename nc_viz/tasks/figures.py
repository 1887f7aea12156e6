"""What each command does, as plain functions that write files (no click here)."""
from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..pair import ModelPair, PairResult, PairSpec, default_batch_size, load_model_pair, maps_arrays
from ..cams.compute import RANKINGS, CamOutput, classifier_of
from ..models.inputs import TinyInputWarning, load_batch
from ..core.errors import ParameterError, UsageError
from ..core.finite import warn_results
from ..figures.build import (DIVERSITY_TOP_Q, Diversity, compare_figure, neuron_diversity, neuron_shares,
                              neurons_figure)
from ..figures.style import MapStyle
from ..core.io import atomic_write_bytes, check_writable
from ..cams.methods import get_method, neuron_methods

from .provenance import build_provenance, figure_meta, provenance_json
from ..figures.raster import Figure, encode, format_for
from ..core.roles import ROLES
from .guards import check_outputs_distinct, model_inputs

log = logging.getLogger(__name__)


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive chunks of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_pair_on_paths(pair: ModelPair, paths: Sequence[Path], batch_size: int | None, target: str | None,
                      method: str, scale: str, top_k: int = 0,
                      rank_by: str = "contribution") -> list[PairResult]:
    """Decode `paths` in order and run both models batch by batch (None: the device's default size)."""
    target_index = pair.parse_target(target)
    tiny = TinyInputWarning(pair.preprocess)
    results = []
    for chunk in batched(paths, batch_size or default_batch_size(pair.device)):
        x = load_batch(chunk, pair.preprocess, tiny)
        results.append(pair.run(x, target_index, method, scale, top_k, rank_by))
    return results


def save_maps_file(path: Path, results: Sequence[PairResult], extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write the saved-maps arrays as an uncompressed .npz, atomically."""
    arrays = maps_arrays(results)
    arrays.update(extra or {})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_and_run(paths: Sequence[Path], spec: PairSpec, batch_size: int | None, target: str | None,
                 method: str, scale: str, top_k: int = 0,
                 rank_by: str = "contribution") -> tuple[ModelPair, list[PairResult]]:
    """Load the pair and run it on `paths`; with `top_k`, check it against both models first."""
    pair = load_model_pair(spec)
    if top_k:
        check_top_k(pair, top_k)
    results = run_pair_on_paths(pair, paths, batch_size, target, method, scale, top_k, rank_by)
    warn_results(results, ", ".join(map(str, paths[:3])) + (", ..." if len(paths) > 3 else ""))
    return pair, results


def check_outputs(inputs: Sequence[Path], *paths: Path | None,
                  reads: Sequence[tuple[Path, str]] = ()) -> None:
    """Before any work: the outputs differ from each other, from the input images and from the
    other files the command reads (`reads`: checkpoints, ...), hard links included, and each
    can be written (one-line errors naming the path)."""
    given = [p for p in paths if p is not None]
    check_outputs_distinct([*((p, "an input image") for p in inputs), *reads], given)
    for path in given:
        check_writable(path)


def write_outputs(output: Path, figure: Figure, fmt: str, results: Sequence[PairResult],
                  save_maps: Path | None = None, provenance: dict[str, Any] | None = None) -> list[Path]:
    """Encode and write the figure, then the maps file when asked, each atomically; both carry
    `provenance` (the figure as metadata, the maps file as the string array `provenance`)."""
    if provenance:
        figure.meta = figure_meta(provenance)
    written = [atomic_write_bytes(output, encode(figure, fmt))]
    if save_maps:
        extra = {"provenance": np.array(provenance_json(provenance))} if provenance else None
        written.append(save_maps_file(save_maps, results, extra))
    return written


def run_compare(paths: Sequence[Path], output: Path, *, pair_spec: PairSpec = PairSpec(), fmt: str | None = None,
                titles: Sequence[str] = ("Input", "CAM-Baseline", "CAM-Ours"), save_maps: Path | None = None,
                target: str | None = None, style: MapStyle = MapStyle(), batch_size: int | None = None,
                diff: bool = False, row_labels: Sequence[str] | None = None) -> list[Path]:
    """Load the pair, compute maps for `paths`, write the figure (and maps); return written paths.

    `style`: how the maps are computed (`method`, `scale`) and drawn; `diff`: a fourth column,
    NC minus baseline; `row_labels`: one label per image, left of its row."""
    fmt = format_for(output, fmt)
    style.check()
    if row_labels is not None and len(row_labels) != len(paths):
        raise ParameterError("row_labels", f"{{param}}: {len(row_labels)} labels for {len(paths)} images")
    check_outputs(paths, output, save_maps, reads=model_inputs(pair_spec))
    method = style.method.lower()
    pair, results = load_and_run(paths, pair_spec, batch_size, target, method, style.scale)
    figure = compare_figure(merge_results(results), pair.class_name, titles, style=replace(style, method=method),
                            names=[p.name for p in paths], diff=diff, row_labels=row_labels)
    record = build_provenance(pair, method=style.method, target=target, cmap=style.cmap, alpha=style.alpha,
                              scale=style.scale)
    return write_outputs(output, figure, fmt, results, save_maps, record)


# ----------------------------------------------------------------------------- neurons

MAX_TOP = 64
NEURONS_SCHEMA = "ncviz.neurons/1"


def check_neuron_options(top_k: int, method: str, rank_by: str) -> None:
    """Option checks that need no model: `top_k` in 1..64, a method with neuron maps (`cam`), a known
    ranking. ParameterError names the parameter."""
    if not 1 <= top_k <= MAX_TOP:
        raise ParameterError("top_k", f"{{param}} {top_k} is out of range: use 1..{MAX_TOP}")
    if not get_method(method).neurons:
        raise ParameterError("method", f"{{param}} {method}: neuron maps need the CAM decomposition; use "
                                       + " or ".join(f"{{param}} {name}" for name in neuron_methods()))
    if rank_by not in RANKINGS:
        raise ParameterError("rank_by", f"{{param}} {rank_by}: choose from {', '.join(RANKINGS)}")


def check_top_k(pair: ModelPair, top_k: int) -> None:
    """`top_k` may not exceed the channel count of either model's last layer."""
    for loaded in pair.roles.values():
        channels = classifier_of(loaded.model).in_features
        if top_k > channels:
            raise ParameterError("top_k", f"{{param}} {top_k} is out of range: {loaded.path} has {channels} "
                                          f"channels in its last layer")


def _number(value: float) -> float | None:
    """A JSON-safe float with 6 significant digits (NaN becomes null)."""
    return None if math.isnan(value) else float(f"{value:.6g}")


def _model_report(out: CamOutput, i: int, class_name: Callable[[int], str], div: Diversity) -> dict[str, Any]:
    shares = neuron_shares(out)[i].tolist()
    c = int(out.target[i])
    return {
        "class": c,
        "class_name": class_name(c),
        "probability": _number(float(out.target_prob[i])),
        "logit": _number(float(out.logits[i, c])),
        "logit_minus_bias": _number(float(out.contributions[i].sum())),
        "neuron_ids": out.neuron_ids[i].tolist(),
        "contributions": [_number(v) for v in out.neuron_scores[i].tolist()],
        "shares": [_number(v) for v in shares],
        "activations": [_number(v) for v in out.neuron_activation[i].tolist()],
        "top_k_share": _number(float(sum(shares))),
        "diversity": {"correlation": _number(div.correlation), "iou": _number(div.iou)},
    }


def neurons_report(result: PairResult, paths: Sequence[Path], class_name: Callable[[int], str],
                   diversity: Sequence[tuple[Diversity, Diversity]], rank_by: str) -> dict[str, Any]:
    """The JSON sidecar of `ncviz neurons` (schema in the README)."""
    images = [{"path": str(path), **{role: _model_report(result.roles[role].out, i, class_name, div[m])
                                     for m, role in enumerate(ROLES)}}
              for i, (path, div) in enumerate(zip(paths, diversity))]
    return {
        "schema": NEURONS_SCHEMA,
        "top_k": int(result.roles[ROLES[0]].out.neuron_ids.shape[1]),
        "rank_by": rank_by,
        "share": "contribution / (logit - bias); contributions of all channels sum to logit - bias",
        "diversity": {"maps": "magnitude |w_k^c| f_k of the top-k neuron maps, at feature resolution",
                      "correlation": "mean pairwise Pearson correlation",
                      "iou": f"mean pairwise IoU of each map's top {DIVERSITY_TOP_Q:.0%} region",
                      "top_q": DIVERSITY_TOP_Q},
        "images": images,
    }


def run_neurons(paths: Sequence[Path], output: Path, *, pair_spec: PairSpec = PairSpec(), top_k: int = 8,
                rank_by: str = "contribution", fmt: str | None = None,
                titles: Sequence[str] = ("Input", "Baseline", "Ours"), save_maps: Path | None = None,
                json_path: Path | None = None, target: str | None = None, style: MapStyle = MapStyle(),
                batch_size: int | None = None) -> list[Path]:
    """Fig. 3: the top-k neuron maps of both models per image; write the figure, maps and JSON.

    `style`: how the maps are drawn (its `method` must have neuron maps: cam)."""
    fmt = format_for(output, fmt)
    style.check()
    check_neuron_options(top_k, style.method, rank_by)
    check_outputs(paths, output, save_maps, json_path, reads=model_inputs(pair_spec))
    pair, results = load_and_run(paths, pair_spec, batch_size, target, "cam", style.scale, top_k, rank_by)
    merged = merge_results(results)
    diversity = neuron_diversity(merged)
    figure = neurons_figure(merged, pair.class_name, top_k, titles, style=style,
                            names=[p.name for p in paths], diversity=diversity, rank_by=rank_by)
    record = build_provenance(pair, target=target, cmap=style.cmap, alpha=style.alpha, scale=style.scale,
                              top_k=top_k, rank_by=rank_by)
    written = write_outputs(output, figure, fmt, results, save_maps, record)
    if json_path:
        report = neurons_report(merged, paths, pair.class_name, diversity, rank_by)
        report["provenance"] = record
        text = json.dumps(report, indent=2, allow_nan=False) + "\n"
        written.append(atomic_write_bytes(json_path, text.encode("utf-8")))
    return written


def merge_results(results: Sequence[PairResult]) -> PairResult:
    """One PairResult holding all batches in order (for one figure over all images)."""
    return results[0] if len(results) == 1 else PairResult.concat(results)
