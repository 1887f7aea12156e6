"""What each command does, as plain functions that write files (no click here)."""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .api import ModelPair, PairResult, load_model_pair, maps_arrays
from .figures import compare_figure
from .data import load_batch
from .io import atomic_write_bytes
from .render import check_colormap, encode, format_for

log = logging.getLogger(__name__)


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive chunks of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_pair_on_paths(pair: ModelPair, paths: Sequence[Path], batch_size: int, target: str | None,
                      method: str, scale: str, top_k: int = 0,
                      rank_by: str = "contribution") -> list[PairResult]:
    """Decode `paths` in order and run both models batch by batch."""
    target_index = pair.parse_target(target)
    results = []
    for chunk in batched(paths, batch_size):
        x = load_batch(chunk, pair.preprocess)
        results.append(pair.run(x, target_index, method, scale, top_k, rank_by))
    return results


def save_maps_file(path: Path, results: Sequence[PairResult], extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write the `--save-maps` arrays as an uncompressed .npz, atomically."""
    arrays = maps_arrays(results)
    arrays.update(extra or {})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def run_compare(paths: Sequence[Path], output: Path, *, model_kwargs: dict[str, Any], fmt: str | None = None,
                titles: Sequence[str] = ("Input", "CAM-Baseline", "CAM-Ours"), save_maps: Path | None = None,
                method: str = "cam", target: str | None = None, cmap: str = "jet", alpha: float = 0.5,
                scale: str = "panel", panel_size: int | None = None, batch_size: int = 16) -> list[Path]:
    """Load the pair, compute maps for `paths`, write the figure (and maps); return written paths."""
    fmt = format_for(output, fmt)
    check_colormap(cmap)
    pair = load_model_pair(**model_kwargs)
    results = run_pair_on_paths(pair, paths, batch_size, target, method.lower(), scale)
    merged = merge_results(results)
    figure = compare_figure(merged, pair.class_name, titles, cmap, alpha, panel_size,
                            names=[p.name for p in paths])
    written = [atomic_write_bytes(output, encode(figure, fmt))]
    if save_maps:
        written.append(save_maps_file(save_maps, results))
    return written


def merge_results(results: Sequence[PairResult]) -> PairResult:
    """One PairResult holding all batches in order (for one figure over all images)."""
    if len(results) == 1:
        return results[0]
    import torch

    from .cam import CamOutput

    def cat_out(outs: Sequence[CamOutput]) -> CamOutput:
        fields = {}
        for name, value in vars(outs[0]).items():
            fields[name] = None if value is None else torch.cat([getattr(o, name) for o in outs])
        return CamOutput(**fields)

    def cat_opt(values):
        return None if values[0] is None else torch.cat(values)

    return PairResult(
        inputs=torch.cat([r.inputs for r in results]),
        pictures=np.concatenate([r.pictures for r in results]),
        baseline=cat_out([r.baseline for r in results]),
        nc=cat_out([r.nc for r in results]),
        baseline_heat=torch.cat([r.baseline_heat for r in results]),
        nc_heat=torch.cat([r.nc_heat for r in results]),
        baseline_neuron_heat=cat_opt([r.baseline_neuron_heat for r in results]),
        nc_neuron_heat=cat_opt([r.nc_neuron_heat for r in results]),
    )
