"""Checks of what a checkpoint file says about itself, before anything is built from it:
metadata is data from a stranger, so every value is checked for type and range
and a bad one is `PATH: reason`, never an internal error or a huge allocation."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

from ..core.errors import CheckpointError

MAX_INPUT_SIZE = 2048    # model input side in pixels (the panel's own maximum)
MAX_CLASSES = 1_000_000
MAX_NAME_CHARS = 500     # a class name: a figure title holds a few dozen; the renderer fails on millions
PLACEMENTS = ("stages", "blocks")


def parse_header_meta(text: str | None, path: Path, field: str) -> dict[str, Any] | None:
    """The own metadata stored as JSON in a safetensors header field (None when absent)."""
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: metadata field {field!r} is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata field {field!r} is not a JSON object "
                              f"(it holds a {type(meta).__name__})")
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _triple(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) and check(x) for x in v)


# key -> (test, what a good value is); None is accepted for the optional keys only
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "arch": (lambda v: isinstance(v, str) and v != "", "an architecture name"),
    "num_classes": (lambda v: _is_int(v) and 1 <= v <= MAX_CLASSES, f"an integer in 1..{MAX_CLASSES}"),
    "input_size": (lambda v: _is_int(v) and 8 <= v <= MAX_INPUT_SIZE, f"an integer in 8..{MAX_INPUT_SIZE}"),
    "mean": (_triple(lambda x: True), "three finite numbers"),
    "std": (_triple(lambda x: x > 0), "three finite numbers above 0"),
    "crop_pct": (lambda v: _is_number(v) and 0.25 <= v <= 1.0, "a number in 0.25..1"),
    "class_names": (lambda v: isinstance(v, (list, tuple))
                    and all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in v),
                    f"a list of strings of at most {MAX_NAME_CHARS} characters"),
    "reduction": (lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    "placement": (lambda v: v in PLACEMENTS, f"one of {', '.join(PLACEMENTS)}"),
    "stem_stride": (lambda v: _is_int(v) and 1 <= v <= 8, "an integer in 1..8"),
    "extra": (lambda v: isinstance(v, Mapping), "an object"),
}
_OPTIONAL = ("class_names", "reduction", "placement", "extra")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_meta(meta: Any, path: Path) -> dict[str, Any] | None:
    """`meta` unchanged when every value it holds is of the right type and range; else
    CheckpointError naming the key. A metadata object that names no `arch` is a hint only."""
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{path}: its metadata is a {type(meta).__name__}, not a mapping")
    if "arch" not in meta:
        return dict(meta)
    for key, (test, wanted) in _RULES.items():
        if key not in meta or (meta[key] is None and key in _OPTIONAL):
            continue
        if not test(meta[key]):
            raise CheckpointError(f"{path}: metadata {key}={_short(meta[key])} is invalid: it must be {wanted}")
    return dict(meta)


def check_dtypes(expected: Mapping[str, Any], state: Mapping[str, Any], path: Path) -> None:
    """A tensor the model holds as floating point must be floating point in the file."""
    for key, tensor in expected.items():
        if key in state and tensor.is_floating_point() and not state[key].is_floating_point():
            raise CheckpointError(f"{path}: {key} holds {str(state[key].dtype).removeprefix('torch.')} values; "
                                  f"the model needs floating point ({str(tensor.dtype).removeprefix('torch.')})")
