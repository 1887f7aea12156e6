"""Reading checkpoint files whose path is not UTF-8: torch.load and safetensors
take such a path only as an open file or as bytes, not by name."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any


def is_utf8(path: str | os.PathLike) -> bool:
    """True when the path's bytes are valid UTF-8 (what the native readers need)."""
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def torch_load_handle(path: Path) -> Any:
    """`torch.load` (weights only) from an open file: no memory map, any path."""
    import torch

    with open(path, "rb") as handle:
        return torch.load(handle, map_location="cpu", weights_only=True)


def read_safetensors_bytes(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, header metadata) of a safetensors file read whole (any path)."""
    from safetensors.torch import load

    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length]) if length <= len(data) - 8 else None
    if not isinstance(header, dict):
        raise ValueError("no safetensors header")
    metadata = header.get("__metadata__") or {}
    return load(data), metadata if isinstance(metadata, dict) else {}
