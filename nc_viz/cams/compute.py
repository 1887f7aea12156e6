"""The CAM engine: class activation maps, neuron maps and contributions (Zhou et al.,
CVPR 2016).

Torch in, torch out, on the model's device. Method `cam` needs one forward pass per
batch: a hook reads the feature map the model's head pools (`models.head`) and the maps come
from the linear classifier's weights; the CAM contract is checked on that same pass.
The gradient family is delegated to the grad-cam package, imported only when asked for.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError, UsageError
from .methods import get_method, neuron_methods

log = logging.getLogger(__name__)


RANKINGS: tuple[str, ...] = ("contribution", "activation")


@dataclass
class CamOutput:
    """Results of one batch for one model; every tensor has the batch first.

    `cam` is the raw map at feature resolution (for `cam`: exactly sum_k w_k^c f_k);
    for a gradient method it is grad-cam's map at input resolution, in [0, 1].
    Neuron fields are set when top-k neurons were asked for (`cam` method only).
    """

    logits: torch.Tensor            # (N, classes)
    target: torch.Tensor            # (N,) int64
    cam: torch.Tensor               # (N, h, w)
    contributions: torch.Tensor | None = None   # (N, C): r_k = w_k^c mean f_k
    neuron_ids: torch.Tensor | None = None      # (N, K) best first
    neuron_maps: torch.Tensor | None = None     # (N, K, h, w): w_k^c f_k
    neuron_scores: torch.Tensor | None = None   # (N, K): r_k of those neurons
    neuron_activation: torch.Tensor | None = None  # (N, K): mean f_k of those neurons

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.float().softmax(dim=1)

    @property
    def target_prob(self) -> torch.Tensor:
        return self.probs.gather(1, self.target[:, None])[:, 0]

    def to(self, device: torch.device | str) -> "CamOutput":
        """A copy with every tensor moved (e.g. to the CPU for rendering)."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return CamOutput(**moved)


def classifier_of(model: nn.Module) -> nn.Linear:
    """The linear classifier of a model's head, or a clear error (see `models.head`)."""
    from ..models import classifier_of as head_classifier

    try:
        return head_classifier(model)
    except ValueError as exc:
        raise UsageError(str(exc).removeprefix("model: ")) from exc


def require_exact_cam(model: nn.Module, features: torch.Tensor | None, logits: torch.Tensor) -> None:
    """Refuse method `cam` for a model whose logits are not its classifier applied to the
    average-pooled features (checked on this forward pass; cached per model)."""
    from ..models import contract_from_forward

    contract = contract_from_forward(model, features, logits)
    if not contract.exact:
        raise ParameterError("method", f"{{param}} cam: CAM is not exact for this model: {contract.reason}; "
                                       f"use a gradient method ({{param}} gradcam)")


PREDICTED = -1  # in a per-image target: explain this image's predicted class


def resolve_target(logits: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None) -> torch.Tensor:
    """Per-image target class: the prediction when `target` is None. A per-image target (a sequence
    or tensor of N classes) may hold PREDICTED (-1) for an image whose predicted class is explained."""
    n, classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise UsageError(f"{t.numel()} targets for {n} images")
    if not isinstance(target, int) and bool((t == PREDICTED).any()):
        t = torch.where(t == PREDICTED, logits.argmax(dim=1), t)
    if int(t.min()) < 0 or int(t.max()) >= classes:
        raise UsageError(f"target class {int(t.max()) if int(t.max()) >= classes else int(t.min())} "
                         f"is out of range: the model has {classes} classes (0..{classes - 1})")
    return t.clone()


def compute_cams(model: nn.Module, x: torch.Tensor,
                 target: int | Sequence[int] | torch.Tensor | None = None,
                 method: str = "cam", top_k: int = 0,
                 rank_by: str = "contribution", autocast: torch.dtype | None = None) -> CamOutput:
    """Class activation maps of a batch `x` for `target` (default: the predicted class).

    `autocast` (bfloat16/float16) runs the forward pass under autocast; the maps are always
    computed in float32 from the upcast features.
    """
    spec = get_method(method)  # the registry (nc_viz.cams.methods) says how each method is computed
    if top_k and not spec.neurons:
        raise ParameterError("top_k", f"{{param}} {top_k}: method {spec.name!r} has no neuron maps; "
                                      f"use one that has ({', '.join(neuron_methods())})")
    if not spec.exact:
        with _autocast(x, autocast):
            if spec.compute is not None:
                return spec.compute(model, x, target)
            return _gradient_cams(model, x, target, spec.name)
    from ..models import features_hook

    fc = classifier_of(model)
    with torch.no_grad():
        with features_hook(model) as hook, _autocast(x, autocast):
            logits = model(x)
        require_exact_cam(model, hook.features, logits)
        return cams_from_features(hook.features, fc.weight, logits, target, top_k, rank_by)


def _autocast(x: torch.Tensor, dtype: torch.dtype | None):
    """Autocast on x's device for `dtype`, or a no-op context for float32."""
    import contextlib

    return torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def cams_from_features(features: torch.Tensor, weight: torch.Tensor, logits: torch.Tensor,
                       target: int | Sequence[int] | torch.Tensor | None = None,
                       top_k: int = 0, rank_by: str = "contribution") -> CamOutput:
    """CAM, contributions and top-k neuron maps from features (N,C,h,w) and fc weights."""
    f = features.float()
    t = resolve_target(logits, target)
    w = weight.detach().float()[t]                                # (N, C): w_k^c per image
    cam = torch.einsum("nc,nchw->nhw", w, f)
    activation = f.mean(dim=(2, 3))                        # (N, C): mean_xy f_k
    contributions = w * activation                         # (N, C): r_k
    out = CamOutput(logits=logits.float(), target=t, cam=cam, contributions=contributions)
    if top_k:
        _add_top_neurons(out, f, w, activation, top_k, rank_by)
    return out


def _add_top_neurons(out: CamOutput, f: torch.Tensor, w: torch.Tensor, activation: torch.Tensor,
                     top_k: int, rank_by: str) -> None:
    if rank_by not in RANKINGS:
        raise UsageError(f"unknown ranking {rank_by!r}; choose from {', '.join(RANKINGS)}")
    channels = f.shape[1]
    if not 1 <= top_k <= channels:
        raise ParameterError("top_k", f"{{param}} {top_k} is out of range: the last layer has {channels} channels")
    score = out.contributions if rank_by == "contribution" else activation
    ids = torch.topk(score, top_k, dim=1, sorted=True).indices           # (N, K)
    idx = ids[:, :, None, None].expand(-1, -1, *f.shape[2:])
    out.neuron_ids = ids
    out.neuron_maps = w.gather(1, ids)[:, :, None, None] * f.gather(1, idx)
    out.neuron_scores = out.contributions.gather(1, ids)
    out.neuron_activation = activation.gather(1, ids)


def _gradient_cams(model: nn.Module, x: torch.Tensor,
                   target: int | Sequence[int] | torch.Tensor | None, method: str) -> CamOutput:
    """A gradient-family map from the grad-cam package (imported here, only when used)."""
    try:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as exc:
        raise ParameterError("method", f"{{param}} {method} needs the grad-cam package: "
                                       f"pip install 'ncviz[gradcam]'") from exc
    from ..models import target_layer

    with torch.no_grad():
        logits = model(x)
    t = resolve_target(logits, target)
    cam_class = getattr(pytorch_grad_cam, get_method(method).grad_cam)
    with torch.enable_grad(), _quiet_progress_bars(), \
            cam_class(model=model, target_layers=[target_layer(model)]) as extractor:
        maps = extractor(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
    cam = torch.from_numpy(maps).to(device=x.device, dtype=torch.float32)
    return CamOutput(logits=logits.float().detach(), target=t, cam=cam)


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """grad-cam's own tqdm bars (ScoreCAM, AblationCAM: one per batch of channels) stay off the
    terminal while it runs: `tqdm.tqdm` is swapped for a disabled one, and restored after."""
    try:
        import tqdm
    except ImportError:  # grad-cam without tqdm: nothing to silence
        yield
        return
    original = tqdm.tqdm
    tqdm.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        tqdm.tqdm = original


def upsample_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsampling of (..., h, w) maps to (..., size, size)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    up = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return up.reshape(*lead, size, size)


def normalise_maps(maps: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Min-max normalise to [0, 1] over the last `dims` dimensions (a flat map gives 0)."""
    flat = maps.flatten(start_dim=maps.dim() - dims)
    lo = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - lo
    scaled = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def display_heatmaps(baseline: torch.Tensor, nc: torch.Tensor, size: int,
                     scale: str = "panel") -> tuple[torch.Tensor, torch.Tensor]:
    """What is drawn: maps upsampled to `size`, normalised per panel or on one shared scale.

    `shared` puts both models' maps of one image on one min-max scale, so the two CAM
    columns compare by eye. Inputs are (N, ..., h, w); outputs (N, ..., size, size).
    """
    a, b = upsample_maps(baseline, size), upsample_maps(nc, size)
    if scale == "panel":
        return normalise_maps(a), normalise_maps(b)
    if scale != "shared":
        raise UsageError(f"unknown scale {scale!r}; choose panel or shared")
    both = torch.stack([a, b], dim=1)
    both = normalise_maps(both, dims=both.dim() - 1)
    return both[:, 0], both[:, 1]


def difference_heatmap(baseline: torch.Tensor, nc: torch.Tensor, size: int) -> torch.Tensor:
    """NC minus baseline on the shared display scale, in [-1, 1]: the two `display_heatmaps`
    of scale `shared` subtracted, i.e. (nc - baseline) / (max - min of both upsampled maps)."""
    a, b = display_heatmaps(baseline, nc, size, "shared")
    return b - a
