"""Checkpoint formats, key mapping, loading and saving (README "Checkpoints"); architecture
inference for metadata-less files is in `arch_inference`, the metadata in `meta`.

Everything is loaded with `torch.load(..., weights_only=True)` or safetensors: a pickle
that would need to run code to load is refused.
"""
from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .arch_inference import infer_meta, plain_shapes  # noqa: F401  (re-exported)
from ..core.errors import CheckpointError, CheckpointParameterError, Param, UsageError, first_line
from ..core.io import atomic_write
from .meta_checks import check_dtypes, check_meta, parse_header_meta
from .meta import LoadedModel, ModelMeta
from . import build_model, check_cam_contract, get_arch, head_of, list_archs
from .odd_paths import is_utf8, read_safetensors_bytes, torch_load_handle
from ..core.files import require_regular_file

log = logging.getLogger(__name__)

FORMAT_NAME = "ncviz"
FORMAT_VERSION = 1
# Wrappers that training code puts around a model's own keys.
_KEY_PREFIXES = ("module.", "net.", "model.", "_orig_mod.")
# Weights the published NC layer carries but never uses.
_UNUSED_NC_KEY = re.compile(r"(^|\.)cn\.(ln|downsample|upsample)\.")
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net")


# ----------------------------------------------------------------------------- reading


def _read_raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read a file into (state_dict, own metadata or None)."""
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    return _unwrap(load_torch_file(path), path)


def load_torch_file(path: Path, what: str = "PyTorch checkpoint",
                    fix: str = "re-save it as a plain state_dict") -> Any:
    """The object in a torch.save file, read with the weights-only unpickler: tensors, numbers,
    strings and containers only, never code. Anything else is a CheckpointError `PATH: reason`
    that names `what` the file should be (`fix`: what to do about a file that would run code)."""
    require_regular_file(path, what, CheckpointError)
    _check_torch_file(path, what)
    try:
        return _torch_load(path)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # garbage, not a pickle of code
            raise CheckpointError(f"{path}: not a readable {what} ({_unpickler_reason(exc)})") from exc
        raise CheckpointError(
            f"{path}: refused: loading it would run code from the file (torch.load with "
            f"weights_only=True rejects it); {fix}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable {what} ({first_line(exc)})") from exc


def _check_torch_file(path: Path, what: str = "PyTorch checkpoint") -> None:
    """A torch.save file is a zip archive (PyTorch >= 1.6) or a pickle (older): anything else is
    refused here, with a short reason instead of the weights-only unpickler's long advice."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from exc
    if head.startswith(b"PK\x03\x04") or head[:2] == b"\x80\x02":  # torch.save: zip, or legacy protocol 2
        return
    if head[:1] == b"\x80":
        raise CheckpointError(f"{path}: not a readable {what} (a plain pickle of protocol {head[1]}, "
                              f"not a torch.save file; save the state dict with torch.save)")
    kind = "an empty file" if not head else "neither a torch.save archive nor a pickle"
    raise CheckpointError(f"{path}: not a readable {what} ({kind})")


def _torch_load(path: Path) -> Any:
    """`torch.load` with weights_only=True; memory-mapped when the file format allows."""
    with warnings.catch_warnings():  # a raw pickle of another protocol: refused below, quietly
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        if not is_utf8(path):
            return torch_load_handle(path)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    from safetensors import SafetensorError, safe_open

    try:
        if not is_utf8(path):
            tensors, header = read_safetensors_bytes(path)
        else:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                header = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(exc)})") from exc
    meta = parse_header_meta(header.get(FORMAT_NAME), path, FORMAT_NAME)
    return tensors, meta


def _unpickler_reason(exc: BaseException) -> str:
    """The cause the weights-only unpickler names (e.g. 'Unsupported operand 149'), without its
    advice to turn the weights-only loading off, which would run code from the file."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        if cause and cause[0].strip():
            return f"the weights-only unpickler rejected it: {cause[0].strip()}"
    if "Weights only load failed" in text:
        return "the weights-only unpickler rejected it"
    return first_line(exc)


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Find the state dict inside the known checkpoint layouts."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    meta = obj.get("meta") if obj.get("format") == FORMAT_NAME else None
    if _is_state_dict(obj):
        return dict(obj), meta
    for key in _STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _is_state_dict(inner):
            if meta is None and isinstance(obj.get("arch"), str):
                meta = {"arch_hint": obj["arch"]}
            return dict(inner), meta
    raise CheckpointError(
        f"{path}: no state dict found (top-level keys: {', '.join(map(str, list(obj)[:8]))})"
    )


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def clean_state_dict(state: Mapping[str, torch.Tensor], path: Path | None = None) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (`module.`, `net.`, ...) and drop unused NC-layer weights."""
    cleaned: dict[str, torch.Tensor] = {}
    dropped = 0
    for key, value in state.items():
        while key.startswith(_KEY_PREFIXES):
            key = key.split(".", 1)[1]
        if _UNUSED_NC_KEY.search(key):
            dropped += 1
            continue
        cleaned[key] = value
    if dropped:
        log.warning("%s: dropped %d weights the NC layer never uses (cn.ln.*, cn.downsample.*, "
                    "cn.upsample.*)", path or "checkpoint", dropped)
    return cleaned


# ----------------------------------------------------------------------------- loading


def load_checkpoint(path: str | os.PathLike, arch: str | None = None,
                    device: str | torch.device = "cpu") -> LoadedModel:
    """Load any supported checkpoint into a model in eval mode on `device`.

    `arch` is needed only for a metadata-less checkpoint whose keys are ambiguous; it
    overrides inference otherwise. A key or shape mismatch raises CheckpointError.
    """
    path = Path(path)
    if arch is not None:
        _check_arch_name(arch)
    require_regular_file(path, "checkpoint file", CheckpointError)
    raw, own_meta = _read_raw(path)
    own_meta = check_meta(own_meta, path)
    state = clean_state_dict(raw, path)
    if own_meta and "arch" in own_meta:
        meta = ModelMeta.from_dict(own_meta)
        if arch and arch != meta.arch:
            log.warning("%s: %s %s ignored: the checkpoint says %s", path, Param("arch"), arch, meta.arch)
    else:
        hint = (own_meta or {}).get("arch_hint")
        meta = infer_meta(state, path, arch or _arch_from_hint(hint, state))
    model = _build_for(meta, path, sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor)))
    _load_strict(model, state, meta.arch, path)
    model.eval().to(device)
    _check_contract(model, meta, path)
    log.info("loaded %s as %s (%d classes)", path, meta.arch, meta.num_classes)
    return LoadedModel(model, meta, path)


def _check_contract(model: nn.Module, meta: ModelMeta, path: Path) -> None:
    """Check the CAM contract on one small input now (cached on the model): method `cam` is then
    refused before any image is read, and the gradient methods still apply."""
    size = min(meta.input_size, 64)
    try:
        contract = check_cam_contract(model, size)
    except RuntimeError:  # the model does not run at 64 px: check at its own size
        contract = check_cam_contract(model, meta.input_size)
    if not contract.exact:
        log.info("%s: CAM is not exact for %s (%s); only the gradient methods apply", path, meta.arch,
                 contract.reason)


def _check_arch_name(arch: str) -> None:
    """An unknown `arch` is a usage error that lists the known names."""
    try:
        get_arch(arch)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _arch_from_hint(hint: Any, state: Mapping[str, torch.Tensor]) -> str | None:
    """The `arch` field of a training checkpoint, when registered, with `_nc` as the keys say.

    The published code writes the plain name (`resnet56`) and switches NC blocks on with a
    separate flag, so whether the model has NC blocks comes from the keys.
    """
    if not isinstance(hint, str) or hint not in list_archs():
        return None
    base = get_arch(hint).base
    return f"{base}_nc" if any(".cn." in key for key in state) else base


SMALL_MODEL = 4_000_000
"""Tensor elements in a checkpoint up to which its model is built on the CPU (random init, under a
forked RNG so the global one is untouched) rather than on the meta device: initialising a small
model costs milliseconds, torch's first use of the meta device about a second (it imports sympy
for symbolic shapes)."""


def _build_for(meta: ModelMeta, path: Path, elements: int | None = None) -> nn.Module:
    """The empty model `meta` describes: on the meta device (no random init: every weight comes
    from the file), or on the CPU when the file holds at most SMALL_MODEL `elements`."""
    try:
        spec = get_arch(meta.arch)
    except ValueError as exc:
        raise CheckpointError(f"{path}: made for an architecture this ncviz does not have: {exc}") from exc
    kwargs: dict[str, Any] = {"input_size": meta.input_size}
    if spec.nc:
        kwargs.update(reduction=meta.reduction or 8, placement=meta.placement or "stages")
        spatial = meta.extra.get("nc_spatial")
        if spatial:
            kwargs["nc_spatial"] = {name: tuple(size) for name, size in spatial.items()}
    if meta.stem_stride != 1:
        kwargs["stem_stride"] = meta.stem_stride
    try:
        if elements is not None and elements <= SMALL_MODEL:
            with torch.random.fork_rng(devices=[]):
                return build_model(meta.arch, meta.num_classes, **kwargs)
        with torch.device("meta"):
            return build_model(meta.arch, meta.num_classes, **kwargs)
    except ValueError as exc:
        raise CheckpointError(f"{path}: cannot build {meta.arch}: {exc}") from exc


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], arch: str, path: Path) -> None:
    """Load all of `state` into `model` or raise an error naming what does not fit."""
    expected = model.state_dict()
    for key in expected:  # old checkpoints lack BN counters; they carry no weights
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointParameterError("arch", f"{path}: does not fit {arch}: "
                                       + _describe_mismatch(missing, unexpected, arch))
    check_dtypes(expected, state, path)
    for key, tensor in expected.items():
        if tensor.is_floating_point() and state[key].is_floating_point() and state[key].dtype != tensor.dtype:
            state[key] = state[key].to(tensor.dtype)  # e.g. a float16 file into a float32 model
        if tensor.shape != state[key].shape:
            raise CheckpointError(
                f"{path}: does not fit {arch}: {key} has shape {tuple(state[key].shape)} in the "
                f"file, {tuple(tensor.shape)} in the model{_shape_hint(key, head_of(model).classifier)}"
            )
    model.load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{path}: {arch} has tensors no checkpoint key fills: {_few(left)}")


def _describe_mismatch(missing: list[str], unexpected: list[str], arch: str) -> str:
    """What does not fit and the likely fix; `{param}` stands for the `arch` parameter."""
    parts = []
    if missing:
        parts.append(f"missing {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected {_few(unexpected)}")
    has_nc = any(".cn." in k for k in unexpected)
    wants_nc = any(".cn." in k for k in missing)
    if has_nc and not arch.endswith("_nc"):
        parts.append(f"likely fix: the file has NC blocks, use {{param}} {arch}_nc")
    elif wants_nc and not has_nc:
        parts.append(f"likely fix: the file has no NC blocks, use {{param}} {arch.removesuffix('_nc')}")
    elif has_nc and wants_nc:
        parts.append("likely fix: the NC blocks sit elsewhere; the other placement (stages/blocks)")
    else:
        parts.append("likely fix: another {param} (see `ncviz models`)")
    return "; ".join(parts)


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown} (+{len(keys) - n} more)" if len(keys) > n else shown


def _shape_hint(key: str, classifier: str) -> str:
    if ".cn." in key:
        return " (another NC reduction ratio or input size)"
    if key.startswith(classifier + "."):
        return " (another number of classes)"
    return ""


# ----------------------------------------------------------------------------- saving


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: ModelMeta, half: bool = False) -> Path:
    """Write the project's own format (state dict + metadata), atomically.

    A `.safetensors` path stores the metadata as JSON in the safetensors header. `half`
    stores floating-point tensors as float16 (half the size); loading casts them back.
    """
    path = Path(path)
    state = {k: _stored(v, half) for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        data = save(state, metadata={FORMAT_NAME: json.dumps(meta.to_dict(), sort_keys=True)})
        return atomic_write(path, lambda f: f.write(data))
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "state_dict": state,
               "meta": meta.to_dict()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    tensor = tensor.detach().cpu().contiguous()
    return tensor.half() if half and tensor.is_floating_point() else tensor


def with_class_names(meta: ModelMeta, names: tuple[str, ...]) -> ModelMeta:
    """A copy of `meta` with class names."""
    return replace(meta, class_names=tuple(names))
