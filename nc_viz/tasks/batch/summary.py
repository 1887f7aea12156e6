"""summary.json: settings and their tag, totals, one record per image."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.io import atomic_write_bytes
from ..provenance import file_sha256, option_settings
from ...core.names import json_safe, readable
from ...core.roles import ROLES
from ...core.files import file_kind
from .gallery import gallery_html
from .options import BatchOptions, INDEX_NAME, SUMMARY_NAME, SUMMARY_SCHEMA

if TYPE_CHECKING:
    from ...pair import PairSpec


@dataclass
class BatchSummary:
    """The outcome of a run (all ranks merged)."""

    output_dir: Path
    data: dict[str, Any]

    @property
    def totals(self) -> dict[str, int]:
        return self.data["totals"]


def run_settings(options: BatchOptions, checkpoints: tuple[Path, Path], spec: PairSpec) -> dict[str, Any]:
    """What decides how a figure looks, the models by content (sha256): kept in summary.json;
    its tag is written into every figure for `skip_existing`."""
    models = {role: {"path": str(path), "sha256": file_sha256(path)} for role, path in zip(ROLES, checkpoints)}
    models.update({"arch": spec.arch, "nc_arch": spec.nc_arch})
    neurons, style = options.draws_neurons, options.style
    return {"layout": options.layout, "top_k": options.top_k if neurons else None,
            "rank_by": options.rank_by if neurons else None, "method": style.method, "target": options.target,
            "scale": style.scale, "cmap": style.cmap, "alpha": style.alpha,
            "panel_size": style.panel_size, "precision": options.precision, "models": models,
            "colorbar": style.show_colorbar, "format": options.fmt, "font_size": style.font_size,
            "dpi": style.dpi, "captions": style.captions,
            "targets": file_sha256(Path(options.targets)) if options.targets else None,
            **option_settings(spec)}


def settings_tag(settings: dict[str, Any]) -> str:
    """A short digest of the settings, paths left out (a moved checkpoint draws the same figures)."""
    models = {k: (v["sha256"] if isinstance(v, dict) else v) for k, v in settings["models"].items()}
    text = json.dumps({**settings, "models": models}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def build_summary(records: dict[int, dict[str, Any]], input_dir: Path, settings: dict[str, Any],
                  provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json's content: settings, provenance, totals, one record per image in sorted order."""
    images = [records[i] for i in sorted(records)]
    totals = {"images": len(images)}
    totals.update({key: sum(r["status"] == status for r in images)
                   for key, status in (("written", "written"), ("skipped", "skipped"), ("failed", "failed"))})
    return {
        "schema": SUMMARY_SCHEMA,
        "input_dir": str(input_dir),
        "settings": settings,
        "settings_tag": settings_tag(settings),
        "provenance": provenance,
        "totals": totals,
        "images": images,
    }


def read_previous(output_dir: Path) -> dict[str, Any] | None:
    """An earlier summary.json in `output_dir` (None if there is none, it is not a regular file, or
    it is unreadable: a FIFO in its place is replaced, never read)."""
    path = output_dir / SUMMARY_NAME
    if file_kind(path) is not None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write_if_changed(path: Path, data: bytes) -> Path:
    """Atomically write `data` unless `path` already holds exactly these bytes (only a regular file
    is read to compare; anything else in its place is replaced)."""
    try:
        if file_kind(path) is None and path.stat().st_size == len(data) and path.read_bytes() == data:
            return path
    except OSError:
        pass
    return atomic_write_bytes(path, data)


def write_reports(output_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json and index.html (rank 0 only)."""
    text = json.dumps(json_safe(summary), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_if_changed(output_dir / SUMMARY_NAME, text.encode("utf-8"))
    write_if_changed(output_dir / INDEX_NAME, readable(gallery_html(summary)).encode("utf-8"))


def drop_stale_reports(output_dir: Path, tag: str) -> None:
    """Remove summary.json and index.html of a run with other settings: they would describe
    figures this run replaces, if it is interrupted before writing its own."""
    previous = read_previous(output_dir)
    if previous is not None and previous.get("settings_tag") != tag:
        for name in (SUMMARY_NAME, INDEX_NAME):
            (output_dir / name).unlink(missing_ok=True)
