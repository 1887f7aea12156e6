"""Checkpoint formats, key mapping, architecture inference and metadata (DESIGN 3).

Everything is loaded with `torch.load(..., weights_only=True)` or safetensors: a pickle
that would need to run code to load is refused.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import pickle
import re
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .data import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .errors import CheckpointError, UsageError, first_line
from .io import atomic_write
from .odd_paths import is_utf8, read_safetensors_bytes, torch_load_handle
from .meta_checks import check_dtypes, check_meta, parse_header_meta
from .models.resnet import CIFAR_MEAN, CIFAR_STD  # noqa: F401  (re-exported)
from .models import ArchSpec, build_model, check_cam_contract, head_of, get_arch, get_family, list_archs, list_families
from .safety import require_regular_file

log = logging.getLogger(__name__)

FORMAT_NAME = "ncviz"
FORMAT_VERSION = 1
# Wrappers that training code puts around a model's own keys.
_KEY_PREFIXES = ("module.", "net.", "model.", "_orig_mod.")
# Weights the published NC layer carries but never uses.
_UNUSED_NC_KEY = re.compile(r"(^|\.)cn\.(ln|downsample|upsample)\.")
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net")


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild a model and feed it: saved with every own checkpoint."""

    arch: str
    num_classes: int
    class_names: tuple[str, ...] | None = None
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    reduction: int | None = None
    placement: str | None = None
    stem_stride: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing the model was trained with."""
        return Preprocess(self.input_size, tuple(self.mean), tuple(self.std), self.crop_pct)

    def class_name(self, index: int) -> str:
        """Readable name of class `index` (the index itself when there are no names)."""
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so that `weights_only=True` can read it back."""
        d = asdict(self)
        d["class_names"] = list(self.class_names) if self.class_names else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelMeta":
        """Inverse of `to_dict`; unknown keys go to `extra`."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        if kwargs.get("class_names") is not None:
            kwargs["class_names"] = tuple(str(c) for c in kwargs["class_names"])
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs, extra=extra)


@dataclass
class LoadedModel:
    """A model in eval mode on its device, with the metadata it was loaded with."""

    model: nn.Module
    meta: ModelMeta
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


# ----------------------------------------------------------------------------- reading


def _read_raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read a file into (state_dict, own metadata or None)."""
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    _check_torch_file(path)
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # garbage, not a pickle of code
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_unpickler_reason(exc)})") from exc
        raise CheckpointError(
            f"{path}: refused: loading it would run code from the file (torch.load with "
            f"weights_only=True rejects it); re-save it as a plain state_dict"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc)})") from exc
    return _unwrap(obj, path)


def _check_torch_file(path: Path) -> None:
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
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (a plain pickle of protocol {head[1]}, "
                              f"not a torch.save file; save the state dict with torch.save)")
    kind = "an empty file" if not head else "neither a torch.save archive nor a pickle"
    raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({kind})")


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
    advice to load with weights_only=False, which would run code from the file."""
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


# ----------------------------------------------------------------------------- inference

_NC_SUFFIX = ".cn.fc_in.0.weight"


def infer_meta(state: Mapping[str, torch.Tensor], path: Path | None = None,
               arch: str | None = None, option: str = "--arch") -> ModelMeta:
    """Architecture and settings of a metadata-less state dict, from its keys and shapes.

    `arch` (the user's --arch) wins over inference, but NC settings still come from the keys.
    `option` is the flag an error message tells the user to pass (`--arch` or `--nc-arch`).
    """
    where = path or "checkpoint"
    nc = _nc_settings(state)
    if arch is None:
        arch = _infer_arch_name(state, where, nc is not None, option)
    spec = get_arch(arch)
    num_classes = _num_classes(state, spec, where)
    reduction, nc_area = nc if nc else (None, None)
    placement = _placement(state, spec) if nc else None
    input_size, extra = spec.default_input_size, {}
    if spec.nc and nc:
        input_size, spatial = _nc_geometry(spec, state, num_classes, reduction, placement, where)
        if spatial:
            extra["nc_spatial"] = {name: list(size) for name, size in spatial.items()}
    return ModelMeta(
        arch=arch,
        num_classes=num_classes,
        class_names=_imagenet_class_names() if num_classes == 1000 else None,
        input_size=input_size,
        mean=spec.mean,
        std=spec.std,
        crop_pct=spec.crop_pct,
        reduction=reduction if spec.nc else None,
        placement=placement if spec.nc else None,
        extra=extra,
    )


def _num_classes(state: Mapping[str, torch.Tensor], spec: ArchSpec, where: Any) -> int:
    """Rows of the classifier's weight, where the spec's head says the classifier is."""
    key = f"{_plain_layout(spec.base).classifier}.weight"
    if key not in state or state[key].dim() != 2:
        raise CheckpointError(f"{where}: no {key!r} key: not a {spec.base} classifier state dict "
                              f"(first keys: {', '.join(list(state)[:4])})")
    return int(state[key].shape[0])


def _nc_settings(state: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
    """(reduction, area of the first NC block) when the keys hold NC blocks."""
    nc_keys = [k for k in state if k.endswith(_NC_SUFFIX)]
    if not nc_keys:
        return None
    hidden, area = state[nc_keys[0]].shape[:2]
    return int(area) // max(int(hidden), 1), int(area)


def _nc_prefixes(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Qualified names of the modules an NC block wraps (`layer1`, `features.denseblock2`)."""
    return [k[:-len(_NC_SUFFIX)] for k in state if k.endswith(_NC_SUFFIX)]


def _placement(state: Mapping[str, torch.Tensor], spec: ArchSpec) -> str:
    """"stages" when every NC block sits at one of the spec's stages, else "blocks"."""
    return "stages" if set(_nc_prefixes(state)) <= set(spec.stages) else "blocks"


def plain_shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """The key -> shape map of the plain network inside a state dict: NC blocks dropped and the
    wrapped modules' keys (`P.block.*`) put back where the plain network has them (`P.*`)."""
    prefixes = _nc_prefixes(state)
    shapes: dict[str, tuple[int, ...]] = {}
    for key, value in state.items():
        wrapper = next((p for p in prefixes if key.startswith(p + ".")), None)
        if wrapper is not None:
            rest = key[len(wrapper) + 1:]
            if rest.startswith("cn."):
                continue
            key = f"{wrapper}.{rest.removeprefix('block.')}"
        shapes[key] = tuple(value.shape)
    return shapes


@dataclass(frozen=True)
class _Layout:
    """A plain architecture's key -> shape map (1 class) and its classifier's name."""

    shapes: dict[str, tuple[int, ...]]
    classifier: str


@functools.lru_cache(maxsize=None)
def _plain_layout(name: str) -> _Layout:
    from .models import head_of

    with torch.device("meta"):
        model = build_model(name, 1)
    return _Layout({k: tuple(v.shape) for k, v in model.state_dict().items()}, head_of(model).classifier)


def _fits(layout: _Layout, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Same keys and shapes, the classifier's number of classes aside."""
    wanted = {k: v for k, v in layout.shapes.items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
    if set(wanted) != set(given):
        return False
    head = (f"{layout.classifier}.weight", f"{layout.classifier}.bias")
    return all(given[k][1:] == v[1:] if k in head else given[k] == v for k, v in wanted.items())


def _candidates(family: str, keys: frozenset[str]) -> list[str]:
    """The family's plain architectures that could hold `keys` (by block counts, where the family
    can count them)."""
    if get_family(family).candidates is not None:
        return list(get_family(family).candidates(keys))
    names = [n for n in list_archs(family) if not get_arch(n).nc]
    count = get_family(family).block_counts
    if count is None:
        return names
    counts = count(keys)
    return [n for n in names if get_arch(n).block_counts == counts]


def _infer_arch_name(state: Mapping[str, torch.Tensor], where: Any, nc: bool, option: str = "--arch") -> str:
    """The one registered architecture whose plain keys and shapes the state dict has."""
    shapes = plain_shapes(state)
    keys = frozenset(shapes)
    families = [f for f in list_families() if get_family(f).recognises(keys)]
    matches = [name for family in families for name in _candidates(family, keys)
               if _fits(_plain_layout(name), shapes)]
    if len(matches) == 1:
        base = matches[0]
        name = f"{base}_nc" if nc else base
        if not nc or name in list_archs():
            return name
        raise CheckpointError(f"{where}: a {base} with NC blocks, but ncviz has no {base}_nc; pass {option}")
    if matches:
        raise CheckpointError(f"{where}: its keys fit several architectures ({', '.join(matches)}); "
                              f"pass {option} (one of them{'' if not nc else ', with _nc'})")
    tried = f"families tried: {', '.join(families)}" if families else "no family recognises its keys"
    raise CheckpointError(
        f"{where}: cannot tell the architecture from its keys ({tried}; first keys: "
        f"{', '.join(list(shapes)[:3])}); pass {option} (see `ncviz models`; a timm model: {option} timm:NAME)"
    )


def _built_block_areas(spec: ArchSpec, num_classes: int, input_size: int, reduction: int,
                       placement: str) -> dict[str, tuple[int, int]]:
    """The map size each NC block of `spec` is built for at `input_size`, in module order (built
    on the meta device)."""
    from .models import NCWrapper

    with torch.device("meta"):
        model = build_model(spec.name, num_classes, input_size=input_size, reduction=reduction, placement=placement)
    return {name: m.cn.spatial for name, m in model.named_modules() if isinstance(m, NCWrapper)}


def _nc_geometry(spec: ArchSpec, state: Mapping[str, torch.Tensor], num_classes: int, reduction: int,
                 placement: str, where: Any) -> tuple[int, dict[str, tuple[int, int]]]:
    """Input size and per-block map sizes of a metadata-less NC state dict.

    The input size at which every block sees its own map size is taken when there is one
    (DESIGN 2.2). Otherwise (the published CIFAR code builds some blocks for a smaller map than
    they see, and resizes) the architecture's default input size, with each such block built
    for the square map its weights hold.
    """
    areas = {k[:-len(_NC_SUFFIX)]: int(v.shape[1]) for k, v in state.items() if k.endswith(_NC_SUFFIX)}
    size = spec.default_input_size
    built = _built_block_areas(spec, num_classes, size, reduction, placement)
    for candidate in dict.fromkeys((_nominal_input_size(spec, built, areas), size)):
        if candidate != size:
            built = _built_block_areas(spec, num_classes, candidate, reduction, placement)
        if set(built) == set(areas) and all(h * w == areas[n] for n, (h, w) in built.items()):
            return candidate, {}
    built = _built_block_areas(spec, num_classes, size, reduction, placement)
    spatial = {}
    for name, area in areas.items():
        if name in built and built[name][0] * built[name][1] != area:
            side = math.isqrt(area)
            if side * side != area:
                raise CheckpointError(f"{where}: the NC block at {name} holds a map of {area} positions, "
                                      f"which is not square; its map size cannot be told")
            spatial[name] = (side, side)
    if spatial:
        log.info("%s: %d NC block(s) built for a smaller map than they see at %d px (%s); they resize, "
                 "as the published code does", where, len(spatial), size, ", ".join(sorted(spatial)))
    return size, spatial


def _nominal_input_size(spec: ArchSpec, built: Mapping[str, tuple[int, int]], areas: Mapping[str, int]) -> int:
    """Input size at which the first NC block sees the map its weights hold: the default input
    size scaled by the ratio of the map sides (file / built at the default size)."""
    first = next((name for name in built if name in areas), None)
    if first is None:
        return spec.default_input_size
    side_file, (side_built, _) = math.isqrt(areas[first]), built[first]
    scaled = spec.default_input_size * side_file
    return scaled // side_built if side_built and scaled % side_built == 0 else spec.default_input_size


def _imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names shipped in torchvision's weight metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


# ----------------------------------------------------------------------------- loading


def load_checkpoint(path: str | os.PathLike, arch: str | None = None,
                    device: str | torch.device = "cpu", option: str = "--arch") -> LoadedModel:
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
            log.warning("%s: %s %s ignored: the checkpoint says %s", path, option, arch, meta.arch)
    else:
        hint = (own_meta or {}).get("arch_hint")
        meta = infer_meta(state, path, arch or _arch_from_hint(hint, state), option)
    model = _build_for(meta, path)
    _load_strict(model, state, meta.arch, path, option)
    model.eval().to(device)
    _check_contract(model, meta, path)
    log.info("loaded %s as %s (%d classes)", path, meta.arch, meta.num_classes)
    return LoadedModel(model, meta, path)


def _check_contract(model: nn.Module, meta: ModelMeta, path: Path) -> None:
    """Check the CAM contract on one small input now (cached on the model): `--method cam` is then
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
    """An unknown --arch is a usage error that lists the known names."""
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


def _build_for(meta: ModelMeta, path: Path) -> nn.Module:
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
        with torch.device("meta"):  # no random init: every weight comes from the file
            return build_model(meta.arch, meta.num_classes, **kwargs)
    except ValueError as exc:
        raise CheckpointError(f"{path}: cannot build {meta.arch}: {exc}") from exc


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], arch: str, path: Path,
                 option: str = "--arch") -> None:
    """Load all of `state` into `model` or raise an error naming what does not fit."""
    expected = model.state_dict()
    for key in expected:  # old checkpoints lack BN counters; they carry no weights
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not fit {arch}: " + _describe_mismatch(missing, unexpected, arch, option))
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


def _describe_mismatch(missing: list[str], unexpected: list[str], arch: str, option: str = "--arch") -> str:
    parts = []
    if missing:
        parts.append(f"missing {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected {_few(unexpected)}")
    has_nc = any(".cn." in k for k in unexpected)
    wants_nc = any(".cn." in k for k in missing)
    if has_nc and not arch.endswith("_nc"):
        parts.append(f"likely fix: the file has NC blocks, use {option} {arch}_nc")
    elif wants_nc and not has_nc:
        parts.append(f"likely fix: the file has no NC blocks, use {option} {arch.removesuffix('_nc')}")
    elif has_nc and wants_nc:
        parts.append("likely fix: the NC blocks sit elsewhere; the other placement (stages/blocks)")
    else:
        parts.append(f"likely fix: another {option} (see `ncviz models`)")
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
