"""ncviz: class activation maps of a baseline CNN beside the same network with NC blocks.

Importing this package imports no torch; the public API is loaded on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_model": "nc_viz.models",
    "list_archs": "nc_viz.models",
    "load_checkpoint": "nc_viz.models.checkpoints",
    "save_checkpoint": "nc_viz.models.checkpoints",
    "load_model_pair": "nc_viz.pair",
    "compute_cams": "nc_viz.cams.compute",
    "NcVizError": "nc_viz.core.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import public API members lazily, so that `import nc_viz` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nc_viz' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
