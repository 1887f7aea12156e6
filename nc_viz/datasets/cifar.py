"""CIFAR-100 in torchvision's layout (`cifar-100-python/train`, `test`, `meta`), read without
running code. No torch here.

The files are Python pickles of dicts of numpy arrays, lists and strings. torchvision reads them
with the standard unpickler, which runs whatever a file asks for (its checksum test only holds
for the original files); here an unpickler that knows only numpy's array constructors reads them, so a
folder someone hands over can hold data and nothing else. Any other global is refused, naming
the file.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import NcVizError
from ..core.files import regular_file_problem

FOLDER = "cifar-100-python"
CLASSES = 100
ROW = 3 * 32 * 32
MAX_BYTES = 1 << 30    # the real train file is 155 MB
# What a pickled numpy array (any numpy since 1.x, any pickle protocol) needs, and nothing else.
_ALLOWED = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")} | {
    ("numpy", "ndarray"), ("numpy", "dtype")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which would run code; only arrays, "
                                     f"lists and strings are read")


def _load(path: Path) -> dict[str, Any]:
    problem = regular_file_problem(path, "CIFAR-100 file")
    if problem:
        raise NcVizError(f"{path}: {problem} (torchvision's layout {FOLDER}/; it is never downloaded)")
    data = path.read_bytes() if path.stat().st_size <= MAX_BYTES else None
    if data is None:
        raise NcVizError(f"{path}: larger than {MAX_BYTES >> 20} MB; not a CIFAR-100 file")
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise NcVizError(f"{path}: refused as a CIFAR-100 file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed pickle raises many kinds; all mean "not this file"
        raise NcVizError(f"{path}: not a readable CIFAR-100 file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise NcVizError(f"{path}: not a CIFAR-100 file (a pickled {type(obj).__name__}, not a dict)")
    return obj


def read_split(data_dir: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images (N, 32, 32, 3) uint8, fine labels (N,) int64 and the 100 class names."""
    base = Path(data_dir) / FOLDER
    path = base / ("train" if train else "test")
    entry = _load(path)
    data, labels = entry.get("data"), entry.get("fine_labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == ROW):
        raise NcVizError(f"{path}: 'data' is not an N x {ROW} array of uint8 (CIFAR-100's rows of 32 x 32 x 3)")
    labels = np.asarray(labels) if isinstance(labels, (list, np.ndarray)) else None
    if labels is None or labels.shape != (len(data),) or labels.dtype.kind not in "iu" or (
            len(labels) and (labels.min() < 0 or labels.max() >= CLASSES)):
        raise NcVizError(f"{path}: 'fine_labels' is not one class in 0..{CLASSES - 1} per image")
    names = _class_names(base)
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64), tuple(names)


def check_folder(data_dir: str | Path) -> None:
    """Before any output is written: `data_dir` holds CIFAR-100 in torchvision's layout (the train,
    test and meta files are regular files; the class names read). NcVizError naming the first
    file that is not there or not readable; ncviz reads what is there and fetches nothing."""
    base = Path(data_dir) / FOLDER
    for name in ("train", "test", "meta"):
        problem = regular_file_problem(base / name, "CIFAR-100 file")
        if problem:
            hint = (f"; {data_dir} looks like the {FOLDER} folder itself: give the folder that holds it"
                    if Path(data_dir).name == FOLDER else "")
            raise NcVizError(f"{base / name}: {problem} (the data folder must hold torchvision's {FOLDER}/ "
                             f"with train, test and meta; ncviz never fetches data){hint}")
    _class_names(base)


def _class_names(base: Path) -> list[str]:
    """The 100 fine class names of `base/meta`."""
    names = _load(base / "meta").get("fine_label_names")
    if not (isinstance(names, list) and len(names) == CLASSES and all(isinstance(n, str) for n in names)):
        raise NcVizError(f"{base / 'meta'}: 'fine_label_names' is not a list of {CLASSES} names")
    return names
