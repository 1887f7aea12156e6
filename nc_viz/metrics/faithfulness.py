"""Faithfulness without annotations: do the maps point at what the model uses?

- Deletion and insertion (Petsiuk et al., RISE, BMVC 2018; eclique/RISE `evaluation.py`):
  pixels are ranked by the map, most important first; deletion replaces them, in that order,
  with the substrate (zeros of the normalised input, RISE's `torch.zeros_like`); insertion
  starts from a blurred copy (RISE's `gkern(11, 5)` with zero padding) and puts the original
  pixels back in the same order. The score after each step is the softmax probability of the
  explained class; the metric is RISE's normalised trapezoid area under that curve.
- Average Drop and Increase in Confidence (Chattopadhyay et al., Grad-CAM++, WACV 2018): the
  explanation image is the map (resized, min-max normalised) times the normalised input.
- ROAD (Rong et al., ICML 2022) lives in `metrics.road`, through grad-cam's implementation.
Each metric registers here with its numbers (`FaithfulnessMetric.specs`, into `metrics.specs`).

Everything is batched: the images of a batch advance together and the step images of the
curves are built and pushed through the model `batch_size` forward images at a time, so a
curve of n steps costs n + 1 forward images per image. Tensors in, tensors out (on `x`'s
device; curves and per-image numbers in float32), under `torch.no_grad()`, with optional
autocast. Nothing here knows the CLI.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError
from ..core.registry import NamedRegistry
from .perturbation import autocast_for, check_inputs, minmax_normalise
from .specs import MetricSpec, register as register_spec, unregister as unregister_spec

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "rise_blur_kernel",
    "blur",
    "step_counts",
    "pixel_ranks",
    "rise_auc",
    "causal_curves",
    "deletion_insertion",
    "minmax_normalise",
    "average_drop_increase",
    "explanation_image",
    "forward_images",
    "cost_per_image",
    "describe_cost",
    "target_probability",
    "FaithfulnessOptions",
    "FaithfulnessMetric",
    "FAITHFULNESS",
    "register",
    "unregister",
    "parse_faithfulness",
    "score_faithfulness",
]

DEFAULT_BATCH_SIZE = 64          # forward images per pass when the caller does not say
MODES = ("deletion", "insertion")
SUBSTRATES = ("zeros", "blur")


# ----------------------------------------------------------------------------- inputs


def target_probability(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                       autocast: torch.dtype | None = None) -> torch.Tensor:
    """Softmax probability of `target` (B,) on `images` (B, C, H, W): one forward pass,
    softmax taken in float32. Returns (B,) float32."""
    with torch.no_grad(), autocast_for(images.device, autocast):
        logits = model(images)
    probs = torch.softmax(logits.float(), dim=1)
    if int(target.min()) < 0 or int(target.max()) >= probs.shape[1]:
        raise ValueError(f"target classes must lie in 0..{probs.shape[1] - 1}, got {target.unique().tolist()}")
    return probs.gather(1, target.view(-1, 1)).squeeze(1)


# ----------------------------------------------------------------------------- RISE pieces


def _reflect(index: torch.Tensor, n: int) -> torch.Tensor:
    """scipy.ndimage's 'reflect' boundary (d c b a | a b c d | d c b a) for indices into n."""
    q = torch.remainder(index, 2 * n)
    return torch.where(q >= n, 2 * n - 1 - q, q)


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's `gkern(size, sigma)` as one (size, size) float32 kernel: scipy's `gaussian_filter`
    (truncate 4, 'reflect' boundary) of a unit impulse at the centre of a size x size array.

    Separable: the outer product of the 1-D filter of the impulse. Sums to 1.
    """
    if size < 1 or sigma <= 0:
        raise ValueError(f"blur kernel needs size >= 1 and sigma > 0, got {size}, {sigma}")
    radius = int(4.0 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()
    positions = torch.arange(size).view(-1, 1) + taps.long().view(1, -1)   # out[i] = sum_j w_j in[i + j]
    hits = (_reflect(positions, size) == size // 2).double()
    line = (hits * weights).sum(dim=1)
    return torch.outer(line, line).float()


def blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion substrate: each channel convolved with `rise_blur_kernel`, zero padding
    size // 2 (RISE's `conv2d(x, gkern, padding=klen // 2)`; the border darkens towards 0 of
    the normalised input). `x` (N, C, H, W) -> same shape and dtype."""
    kernel = rise_blur_kernel(size, sigma).to(device=x.device, dtype=torch.float32)
    c = x.shape[1]
    weight = kernel.expand(c, 1, size, size)
    out = F.conv2d(x.float(), weight, padding=size // 2, groups=c)
    return out[..., :x.shape[-2], :x.shape[-1]].to(x.dtype)


def step_counts(n_pixels: int, steps: int | None = None, pixels_per_step: int | None = None) -> torch.Tensor:
    """Cumulative number of changed pixels after each step, (n + 1,) long from 0 to `n_pixels`.

    `steps=None`: RISE's schedule, `pixels_per_step` at a time (the caller passes S at S x S),
    n = ceil(n_pixels / pixels_per_step) steps, the last one possibly partial.
    `steps=n`: n steps, step t ending at floor(t * n_pixels / n) (sizes differ by at most one).
    Either way every pixel is changed exactly once.
    """
    if steps is None:
        if pixels_per_step is None or pixels_per_step < 1:
            raise ValueError(f"pixels_per_step must be a positive int, got {pixels_per_step!r}")
        n = (n_pixels + pixels_per_step - 1) // pixels_per_step
        return (torch.arange(n + 1, dtype=torch.long) * pixels_per_step).clamp_max(n_pixels)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= n_pixels:
        raise ValueError(f"steps must be an int in 1..{n_pixels} (the number of pixels), got {steps!r}")
    return torch.arange(steps + 1, dtype=torch.long) * n_pixels // steps


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel of each map (N, H, W) -> (N, H*W) long, 0 = most important.

    Descending by value; ties keep row-major order (the earlier pixel first), by a stable sort,
    so the order is the same on every device. (RISE flips an unstable `np.argsort`, which puts
    tied pixels in an order numpy does not specify.)
    """
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def rise_auc(curves: torch.Tensor) -> torch.Tensor:
    """RISE's `auc`: `(sum - first / 2 - last / 2) / (points - 1)` along the last dim, the
    trapezoid area over the fraction changed in [0, 1] with equal spacing. (..., P) -> (...)."""
    if curves.shape[-1] < 2:
        raise ValueError(f"a curve needs at least 2 points, got {curves.shape[-1]}")
    return (curves.sum(-1) - curves[..., 0] / 2 - curves[..., -1] / 2) / (curves.shape[-1] - 1)


# ----------------------------------------------------------------------------- the curves


def _chunks(n: int, size: int) -> Iterator[slice]:
    """Slices covering 0..n in the fewest chunks of at most `size`, their sizes balanced (differing
    by at most one chunk's rounding), so that no pass carries a small remainder."""
    passes = -(-n // size)
    even = -(-n // passes) if passes else size
    for start in range(0, n, even):
        yield slice(start, min(n, start + even))


def _step_images(start: torch.Tensor, finish: torch.Tensor, ranks: torch.Tensor, counts: torch.Tensor
                 ) -> torch.Tensor:
    """(n * k, C, H, W): for each image and each count c of the k in `counts`, `start` with its
    c top-ranked pixels (all channels) taken from `finish`."""
    n, c, h, w = start.shape
    changed = (ranks.view(n, 1, 1, h, w) < counts.view(1, -1, 1, 1, 1))          # (n, k, 1, H, W)
    return torch.where(changed, finish.unsqueeze(1), start.unsqueeze(1)).reshape(-1, c, h, w)


def causal_curves(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor | Sequence[int],
                  mode: str = "deletion", steps: int | None = None, *, substrate: str = "zeros",
                  blur_size: int = 11, blur_sigma: float = 5.0, batch_size: int | None = None,
                  autocast: torch.dtype | None = None) -> torch.Tensor:
    """One RISE curve per image: (N, n + 1) float32 target probabilities after 0..n steps.

    `mode` "deletion": from `x` towards the substrate (`substrate` "zeros", RISE's; or "blur");
    "insertion": from the blurred `x` back to `x`. Pixels in the order of `pixel_ranks(maps)`,
    `step_counts(H * W, steps, W)` changed after each step (RISE: S per step at S x S).
    At most `batch_size` forward images per pass (all step images of a group of images).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if substrate not in SUBSTRATES:
        raise ValueError(f"substrate must be one of {', '.join(SUBSTRATES)}, got {substrate!r}")
    maps, target = check_inputs(x, maps, target)
    counts = step_counts(x.shape[-2] * x.shape[-1], steps, x.shape[-1]).to(x.device)
    ranks = pixel_ranks(maps)
    if mode == "deletion":
        start = x
        finish = torch.zeros_like(x) if substrate == "zeros" else blur(x, blur_size, blur_sigma)
    else:
        start, finish = blur(x, blur_size, blur_sigma), x
    per_pass = max(1, batch_size or DEFAULT_BATCH_SIZE)
    log.debug("%s: %d steps, %d points per curve, up to %d forward images per pass", mode, counts.numel() - 1,
              counts.numel(), per_pass)
    curves = torch.empty(x.shape[0], counts.numel(), dtype=torch.float32, device=x.device)
    for images in _chunks(x.shape[0], per_pass):
        n = images.stop - images.start
        per_image = max(1, per_pass // n)
        for points in _chunks(counts.numel(), per_image):
            batch = _step_images(start[images], finish[images], ranks[images], counts[points])
            k = points.stop - points.start
            probs = target_probability(model, batch, target[images].repeat_interleave(k), autocast)
            curves[images, points] = probs.view(n, k)
    return curves


def deletion_insertion(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor | Sequence[int],
                       steps: int | None = None, *, modes: Sequence[str] = MODES, substrate: str = "zeros",
                       blur_size: int = 11, blur_sigma: float = 5.0, batch_size: int | None = None,
                       autocast: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """RISE deletion and insertion of a batch: for each mode in `modes`, `<mode>_auc` (N,) and
    `<mode>_curve` (N, n + 1), plus `steps` (a 0-d long tensor: the n that was used).

    `x` (N, 3, S, S) normalised input, `maps` (N, S, S) (another size is resized bilinearly),
    `target` (N,) the explained classes. Lower deletion and higher insertion are better.
    Cost: (n + 1) forward images per image and mode; n = S with `steps=None` (RISE).
    """
    out: dict[str, torch.Tensor] = {}
    for mode in modes:
        curve = causal_curves(model, x, maps, target, mode, steps, substrate=substrate, blur_size=blur_size,
                              blur_sigma=blur_sigma, batch_size=batch_size, autocast=autocast)
        out[f"{mode}_curve"], out[f"{mode}_auc"] = curve, rise_auc(curve)
        out["steps"] = torch.tensor(curve.shape[1] - 1)
    return out


# ----------------------------------------------------------------------------- Grad-CAM++


def explanation_image(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s explanation image: map (at x's size, min-max normalised) times the
    normalised input `x`, so a pixel the map ignores goes to 0 (the data set's mean colour)."""
    return x * minmax_normalise(maps).unsqueeze(1).to(x.dtype)


def average_drop_increase(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor | Sequence[int],
                          *, batch_size: int | None = None, autocast: torch.dtype | None = None
                          ) -> dict[str, torch.Tensor]:
    """Grad-CAM++'s Average Drop and Increase in Confidence, per image, all (N,):
    `y` target probability on `x`, `o` on the explanation image, `drop` = max(0, y - o) / y
    (0 where y is 0), `increase` = o > y (bool). The data set's numbers are 100 x mean(drop)
    (lower is better) and 100 x mean(increase) (higher is better). Costs 2 forward images per image.
    """
    maps, target = check_inputs(x, maps, target)
    explained = explanation_image(x, maps)
    per_pass = max(1, batch_size or DEFAULT_BATCH_SIZE)
    y = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    o = torch.empty_like(y)
    for images in _chunks(x.shape[0], max(1, per_pass // 2)):
        probs = target_probability(model, torch.cat([x[images], explained[images]]), target[images].repeat(2),
                                   autocast)
        y[images], o[images] = probs.chunk(2)
    drop = torch.where(y > 0, (y - o).clamp_min(0) / torch.where(y > 0, y, torch.ones_like(y)), torch.zeros_like(y))
    return {"drop": drop, "increase": o > y, "y": y, "o": o}


def forward_images(n_pixels: int, steps: int | None, pixels_per_step: int, modes: Sequence[str] = MODES) -> int:
    """Forward images per image that `deletion_insertion` costs: (n + 1) per mode."""
    return (step_counts(n_pixels, steps, pixels_per_step).numel()) * len(modes)


FIXED_FORWARD_IMAGES = {"drop": 2, "road": 36}   # per image, whatever the input size


def cost_per_image(names: Sequence[str], size: int, steps: int | None = None) -> dict[str, int]:
    """Forward images per image and model of each metric in `names` at input size S x S = `size`
    (deletion and insertion: n + 1, n = `steps` or RISE's S); a metric of unknown cost is left out."""
    return {name: forward_images(size * size, steps, size, (name,)) if name in MODES else FIXED_FORWARD_IMAGES[name]
            for name in names if name in MODES or name in FIXED_FORWARD_IMAGES}


def describe_cost(names: Sequence[str], size: int, steps: int | None, images: int, models: int = 2) -> str:
    """What the faithfulness metrics `names` will cost, in forward images, said before they start."""
    costs = cost_per_image(names, size, steps)
    per_image = sum(costs.values())
    parts = ", ".join(f"{name} {count}" for name, count in costs.items())
    return (f"faithfulness at {size} x {size}: {per_image} forward images per image and model ({parts}); "
            f"{per_image * models * images:,} for {models} models and {images} images, on top of the maps' "
            f"own passes; the time follows the first batch")


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class FaithfulnessOptions:
    """How the faithfulness metrics run (the evaluate flags that reach them)."""

    steps: int | None = None                # deletion/insertion: None = RISE's S pixels per step
    batch_size: int | None = None           # forward images per pass; None = DEFAULT_BATCH_SIZE
    autocast: torch.dtype | None = None     # bfloat16/float16 forward passes
    substrate: str = "zeros"                # deletion substrate: RISE's zeros, or "blur"
    seed: int = 0                           # ROAD's imputation noise


Compute = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, FaithfulnessOptions], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class FaithfulnessMetric:
    """One faithfulness metric name: the numbers it makes (`specs`, `metrics.specs.MetricSpec`s of
    per-image or mean columns; their `faithfulness` is set to `name`), how it computes them and
    what that costs. `compute(model, x, maps, target, options)` returns each column as (N,) and,
    for deletion and insertion, the curve `<name>_curve` (N, n + 1)."""

    name: str
    specs: tuple[MetricSpec, ...]
    compute: Compute
    cost: str

    def __post_init__(self) -> None:
        if any(s.kind == "dataset" or s.faithfulness not in (None, self.name) for s in self.specs):
            raise ValueError(f"faithfulness metric {self.name!r}: its specs fill columns, named by it alone")
        object.__setattr__(self, "specs", tuple(replace(s, faithfulness=self.name) for s in self.specs))

    @property
    def columns(self) -> tuple[str, ...]:
        """The per-image record columns it fills, in its specs' order."""
        return tuple(str(spec.column) for spec in self.specs)


def _causal(mode: str) -> Compute:
    def compute(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                options: FaithfulnessOptions) -> dict[str, torch.Tensor]:
        out = deletion_insertion(model, x, maps, target, options.steps, modes=(mode,), substrate=options.substrate,
                                 batch_size=options.batch_size, autocast=options.autocast)
        return {f"{mode}_auc": out[f"{mode}_auc"], f"{mode}_curve": out[f"{mode}_curve"]}
    return compute


def _drop(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
          options: FaithfulnessOptions) -> dict[str, torch.Tensor]:
    out = average_drop_increase(model, x, maps, target, batch_size=options.batch_size, autocast=options.autocast)
    return {"avg_drop": out["drop"], "increase": out["increase"].float()}


def _road(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
          options: FaithfulnessOptions) -> dict[str, torch.Tensor]:
    from .road import road_scores

    return road_scores(model, x, maps, target, seed=options.seed, autocast=options.autocast)


_REGISTRY: NamedRegistry[FaithfulnessMetric] = NamedRegistry("faithfulness metric")
FAITHFULNESS = _REGISTRY.items  # name -> FaithfulnessMetric, in registration order (the `all` order)


def register(metric: FaithfulnessMetric) -> FaithfulnessMetric:
    """Add `metric` and its specs to `metrics.specs`' table (after those already there, in its
    specs' order); a name taken in either registry is a ValueError and registers nothing."""
    _REGISTRY.register(metric)
    added: list[str] = []
    try:
        for spec in metric.specs:
            added.append(register_spec(spec).name)
    except ValueError:
        for name in added:
            unregister_spec(name)
        _REGISTRY.unregister(metric.name)
        raise
    return metric


def unregister(name: str) -> None:
    """Remove the metric `name` and its specs, if registered (tests register dummies)."""
    for spec in FAITHFULNESS[name].specs if name in FAITHFULNESS else ():
        unregister_spec(spec.name)
    _REGISTRY.unregister(name)


register(FaithfulnessMetric("deletion", (
    MetricSpec("deletion_auc", "mean", "deletion_auc", "deletion AUC (RISE; lower = more faithful)", better="lower"),
), _causal("deletion"), "n + 1 forward images per image"))
register(FaithfulnessMetric("insertion", (
    MetricSpec("insertion_auc", "mean", "insertion_auc", "insertion AUC (RISE; higher = more faithful)",
               better="higher"),
), _causal("insertion"), "n + 1 forward images per image"))
register(FaithfulnessMetric("drop", (
    MetricSpec("avg_drop", "mean", "avg_drop", "Average Drop (%, Grad-CAM++; lower = more faithful)", percent=True,
               better="lower"),
    MetricSpec("increase", "mean", "increase", "Increase in Confidence (%, Grad-CAM++; higher = better)",
               percent=True, better="higher"),
), _drop, "2 forward images per image"))
register(FaithfulnessMetric("road", (
    MetricSpec("road_morf", "mean", "road_morf", "ROAD MoRF (grad-cam; lower = better)", better="lower"),
    MetricSpec("road_lerf", "mean", "road_lerf", "ROAD LeRF (grad-cam; higher = better)", better="higher"),
    MetricSpec("road_combined", "mean", "road_combined", "ROAD combined (grad-cam; higher = better)",
               better="higher"),
), _road, "36 forward images and 18 sparse solves per image (grad-cam)"))


def parse_faithfulness(spec: str | Sequence[str] | None) -> list[str]:
    """`deletion,drop` (or `all`) -> the metric names, in registry order, each once.
    None or "" -> []. An unknown name is a ParameterError naming `faithfulness`."""
    if spec is None:
        return []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = {p.strip().lower() for p in parts if p.strip()}
    if "all" in names:
        return list(FAITHFULNESS)
    unknown = sorted(names - set(FAITHFULNESS))
    if unknown:
        raise ParameterError("faithfulness", f"{{param}} {','.join(unknown)}: choose from {', '.join(FAITHFULNESS)} "
                                             f"or all")
    return [name for name in FAITHFULNESS if name in names]


def score_faithfulness(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor | Sequence[int],
                       names: Sequence[str], options: FaithfulnessOptions = FaithfulnessOptions()
                       ) -> dict[str, torch.Tensor]:
    """Every column (N,) (and curve (N, n + 1)) of the metrics `names` for one model and batch."""
    out: dict[str, torch.Tensor] = {}
    for name in names:
        if name not in FAITHFULNESS:
            raise ParameterError("faithfulness", f"{{param}} {name}: choose from {', '.join(FAITHFULNESS)} or all")
        out.update(FAITHFULNESS[name].compute(model, x, maps, target, options))
    return out
