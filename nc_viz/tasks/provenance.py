"""What drew an output: one record, keyed by role, carried by every figure and JSON file.

`build_provenance` makes the record once per run (each checkpoint hashed once); figures carry
it as text (`figure_meta`: PNG tEXt, PDF Info, SVG metadata), JSON files as a `provenance`
object, saved-maps files as a string. It holds no time stamp, so reruns give the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .. import __version__
from ..core.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from ..pair import ModelPair, PairSpec
    from ..models.checkpoints import LoadedModel

SCHEMA = "ncviz.provenance/1"
PROVENANCE_KEY = "ncviz-provenance"  # PNG tEXt keyword (PDF: Subject, SVG: dc:description)
SOFTWARE_KEY = "Software"            # PNG tEXt keyword (PDF and SVG: Creator)
GROUND_TRUTH = "ground truth"        # the target rule of `ncviz evaluate`


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint file, read in chunks."""
    from ..core.files import require_regular_file

    path = require_regular_file(Path(path), "checkpoint file", CheckpointError)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_record(loaded: LoadedModel, sha256: str | None = None) -> dict[str, Any]:
    """One checkpoint: path as given, sha256 and the architecture it was loaded as."""
    meta = loaded.meta
    return {"path": str(loaded.path), "sha256": sha256 or file_sha256(loaded.path), "arch": meta.arch,
            "num_classes": meta.num_classes, "reduction": meta.reduction, "placement": meta.placement}


def input_record(pair: ModelPair, preprocess: Any = None) -> dict[str, Any]:
    """Input size and preprocessing (`preprocess`, default the pair's), and which of them the
    command line set."""
    p = preprocess or pair.preprocess
    return {"size": p.input_size, "resize": p.resize_size if p.center_crop else None,
            "crop": "center" if p.center_crop else "none", "mean": [float(v) for v in p.mean],
            "std": [float(v) for v in p.std],
            "set_by_options": pair.preprocess_override.given if pair.preprocess_override else []}


def target_rule(pair: ModelPair, target: str | int | None) -> dict[str, Any]:
    """`predicted` (each model's own prediction), `ground truth`, or one named class."""
    if target is None or target == "":
        return {"rule": "predicted"}
    if target == GROUND_TRUTH:
        return {"rule": GROUND_TRUTH}
    index = pair.parse_target(target)
    return {"rule": "class", "class": index, "name": pair.class_name(index)}


def device_label(device: torch.device) -> str:
    """`cpu`, or `cuda (<GPU name>)`: the kind, not the index, so every rank of a run agrees."""
    if device.type != "cuda":
        return device.type
    import torch

    return f"cuda ({torch.cuda.get_device_name(device)})"


def build_provenance(pair: ModelPair, *, method: str = "cam", target: str | int | None = None,
                     cmap: str | None = None, alpha: float | None = None, scale: str | None = None,
                     top_k: int | None = None, rank_by: str | None = None, precision: str = "fp32",
                     hashes: Mapping[str, str] | None = None, preprocess: Any = None) -> dict[str, Any]:
    """The record of one run. `hashes` (role -> sha256) reuses hashes already computed;
    `preprocess`: what the run fed the models when it is not the pair's own (evaluate: no crop).

    Settings that do not apply to an output (e.g. top-k of a compare figure) are None.
    """
    import torch

    hashes = hashes or {}
    names = pair.class_names_file
    return {
        "schema": SCHEMA,
        "ncviz": __version__,
        "torch": torch.__version__,
        "models": {role: model_record(loaded, hashes.get(role)) for role, loaded in pair.roles.items()},
        "class_names": str(names) if names else ("checkpoint" if pair.baseline.meta.class_names else None),
        "method": method.lower(),
        "target": target_rule(pair, target),
        "cmap": cmap,
        "alpha": alpha,
        "scale": scale,
        "top_k": top_k,
        "rank_by": rank_by if top_k else None,
        "input": input_record(pair, preprocess),
        "device": device_label(pair.device),
        "precision": precision,
    }


def provenance_json(record: Mapping[str, Any]) -> str:
    """Compact, sorted, ASCII-only JSON (PNG text chunks are Latin-1)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def figure_meta(record: Mapping[str, Any]) -> dict[str, str]:
    """`Figure.meta` of a figure drawn under `record`."""
    return {SOFTWARE_KEY: f"ncviz {record['ncviz']}", PROVENANCE_KEY: provenance_json(record)}


def option_settings(spec: PairSpec) -> dict[str, Any]:
    """Settings from `class_names` and the preprocessing options, only those set (batch's
    settings tag of runs without them stays as it was)."""
    from ..models.class_names import read_class_names

    settings: dict[str, Any] = {}
    if spec.class_names is not None:
        names = "\n".join(read_class_names(spec.class_names))
        settings["class_names"] = hashlib.sha256(names.encode("utf-8")).hexdigest()
    if spec.preprocess is not None:
        settings["preprocess"] = spec.preprocess.to_dict()
    return settings


# ----------------------------------------------------------------------------- gallery


def _settings_line(record: Mapping[str, Any]) -> str:
    target = record["target"]
    rule = target["rule"] if target["rule"] != "class" else f"class {target['class']} ({target['name']})"
    parts = [f"method {record['method']}", f"target {rule}", f"colormap {record['cmap']}",
             f"alpha {record['alpha']}", f"scale {record['scale']}"]
    if record.get("top_k"):
        parts.append(f"top-{record['top_k']} by {record['rank_by']}")
    parts += [_input_text(record["input"]), f"device {record['device']}, {record['precision']}",
              f"ncviz {record['ncviz']}, torch {record['torch']}"]
    return " · ".join(parts)


def _input_text(p: Mapping[str, Any]) -> str:
    crop = f"resize {p['resize']}, centre crop" if p["crop"] == "center" else "resized, no crop"
    given = f"; set by {' '.join(p['set_by_options'])}" if p["set_by_options"] else ""
    return f"input {p['size']} px ({crop}; mean {p['mean']}, std {p['std']}{given})"


def provenance_html(record: Mapping[str, Any] | None) -> list[str]:
    """The gallery's header block: both checkpoints and the settings (lines of HTML)."""
    if not record:
        return []
    rows = [f"<tr><th>{escape(role)}</th><td>{escape(m['path'])}</td><td>{escape(m['arch'])}</td>"
            f"<td><code>{escape(m['sha256'])}</code></td></tr>" for role, m in record["models"].items()]
    return ['<section class="provenance">',
            "<table><tr><th>model</th><th>checkpoint</th><th>architecture</th><th>sha256</th></tr>",
            *rows, "</table>", f"<p>{escape(_settings_line(record))}</p>", "</section>"]
