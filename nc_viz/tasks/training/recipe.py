"""The published CIFAR training recipe, run epoch by epoch with a resumable state.

`Recipe` holds the knobs of jwyang/C3Net.pytorch's `configs/cifar100.yaml` and `train.py`:
plain SGD (no Nesterov, no warm-up) over every parameter (NC block and BatchNorm ones
included) with lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, 160 epochs, the rate
times 0.1 from epoch 120 and from epoch 140 (epochs counted from 1); 4-pixel zero-padded
random crops and horizontal flips.

`train_run` trains one model in a folder of its own: after every epoch it writes the log
(`log.csv`) and a resume file (`resume.pt`: weights, optimizer state, epoch, the random
generator's state, the log so far); at the end, the checkpoint in the project's format
(`model.pt`) and `result.json`, the mark of a finished run. Rerun, it skips a finished run and
resumes an interrupted one from its last epoch, to the same final checkpoint (CPU, seeded).
The data stay on the training device as uint8; each epoch's random draws (order, flips, crop
offsets) are made on the CPU in one go, so CPU and GPU runs draw the same numbers and the
loop has no host synchronisation per step.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...models.checkpoints import ModelMeta, load_torch_file, save_checkpoint
from ...models.preprocessing import Preprocess
from ...core.errors import NcVizError, ParameterError, UsageError, first_line
from ...core.io import atomic_write, atomic_write_bytes
from ...models import build_model, get_arch
from ...core.files import read_json_object

log = logging.getLogger(__name__)

LOG_NAME, RESUME_NAME, MODEL_NAME, RESULT_NAME = "log.csv", "resume.pt", "model.pt", "result.json"
LOG_FIELDS = ("epoch", "loss", "accuracy", "lr", "seconds")


@dataclass(frozen=True)
class Recipe:
    """How a model is trained (defaults: the published CIFAR-100 recipe)."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 160
    milestones: tuple[int, ...] = (120, 140)
    gamma: float = 0.1
    pad: int = 4
    flip: bool = True
    test_batch_size: int = 1000

    def check(self) -> None:
        """Refuse impossible knobs, naming the option."""
        positive = {"lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs,
                    "test_batch_size": self.test_batch_size, "gamma": self.gamma}
        for name, value in positive.items():
            if not value > 0:
                raise UsageError(f"--{name.replace('_', '-')}: must be positive, got {value}")
        for name, value in {"momentum": self.momentum, "weight_decay": self.weight_decay, "pad": self.pad}.items():
            if value < 0:
                raise UsageError(f"--{name.replace('_', '-')}: must not be negative, got {value}")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ParameterError("milestones", f"{{param}}: epochs counted from 1, increasing, "
                                               f"got {list(self.milestones)}")
        if self.nesterov and self.momentum == 0:
            raise ParameterError("nesterov", "{param} needs a positive {param:momentum}")

    @classmethod
    def for_epochs(cls, epochs: int, milestones: Sequence[int] | None = None, **knobs: Any) -> "Recipe":
        """The recipe over `epochs`; without `milestones`, the published ones scaled (3/4 and 7/8 of
        the run: 120 and 140 of 160), those that would fall on the first epoch or after the last left out."""
        if milestones is None:
            milestones = sorted({round(f * epochs) for f in (0.75, 0.875)} & set(range(2, epochs + 1)))
        return cls(epochs=epochs, milestones=tuple(milestones), **knobs)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of `epoch` (from 1), as the published loop sets it before training it."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "milestones": list(self.milestones)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        return cls(**{**d, "milestones": tuple(d.get("milestones", ()))})


@dataclass(frozen=True)
class ModelSpec:
    """Which model one run trains, and the input it sees (`preprocess`: input size and
    normalisation, recorded as is in the checkpoint; `train.training_preprocess` gives the data
    sets' own)."""

    arch: str
    seed: int
    stem_stride: int
    preprocess: Preprocess
    reduction: int | None = None       # NC reduction ratio alpha; None for the baseline
    placement: str = "stages"
    extra: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    def build(self, num_classes: int) -> nn.Module:
        """A freshly initialised model, seeded."""
        torch.manual_seed(self.seed)
        kwargs: dict[str, Any] = {"input_size": self.input_size, "stem_stride": self.stem_stride}
        if get_arch(self.arch).nc:
            kwargs.update(reduction=self.reduction, placement=self.placement)
        try:
            return build_model(self.arch, num_classes, **kwargs)
        except ValueError as exc:
            raise ParameterError("arch", f"{{param}} {self.arch}: {exc}") from exc

    def meta(self, classes: Sequence[str], extra: dict[str, Any]) -> ModelMeta:
        nc = get_arch(self.arch).nc
        return ModelMeta(arch=self.arch, num_classes=len(classes), class_names=tuple(classes),
                         preprocess=self.preprocess,
                         reduction=self.reduction if nc else None, placement=self.placement if nc else None,
                         stem_stride=self.stem_stride, extra={**self.extra, **extra})


# ----------------------------------------------------------------------------- device


def resolve_training_device(spec: str) -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N`; a missing GPU is a clear error."""
    from ...pair import resolve_device

    return resolve_device(spec)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device`; channels_last on CUDA."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU (seeded CPU runs stay exact)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


# ----------------------------------------------------------------------------- data on the device


@dataclass
class EpochDraws:
    """One epoch's random numbers: the order, and per image a flip and a crop offset."""

    order: torch.Tensor
    flips: torch.Tensor
    offsets: torch.Tensor  # (N, 2): dy, dx in [0, 2 * pad]

    @classmethod
    def draw(cls, count: int, pad: int, generator: torch.Generator) -> "EpochDraws":
        order = torch.randperm(count, generator=generator)
        flips = torch.rand(count, generator=generator) < 0.5
        offsets = torch.randint(0, 2 * pad + 1, (count, 2), generator=generator)
        return cls(order, flips, offsets)

    def to(self, device: torch.device) -> "EpochDraws":
        return EpochDraws(*(t.to(device, non_blocking=True) for t in (self.order, self.flips, self.offsets)))


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, pad: int) -> torch.Tensor:
    """Per-image random crops of zero-padded uint8 images (N, H, W, 3), then flips, as tensor ops."""
    n, h, w, _ = images.shape
    if pad:
        padded = F.pad(images, (0, 0, pad, pad, pad, pad))
        rows = (offsets[:, 0:1] + torch.arange(h, device=images.device))[:, :, None]
        cols = (offsets[:, 1:2] + torch.arange(w, device=images.device))[:, None, :]
        images = padded[torch.arange(n, device=images.device)[:, None, None], rows, cols]
    if flips is not None:
        images = torch.where(flips[:, None, None, None], images.flip(2), images)
    return images


@functools.lru_cache(maxsize=16)
def channel_stats(mean: tuple[float, ...], std: tuple[float, ...],
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as tensors on `device`, made once (a copy to the GPU per step would wait for it)."""
    return torch.tensor(mean, device=device), torch.tensor(std, device=device)


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W): channels_last in memory on CUDA."""
    m, s = channel_stats(tuple(mean), tuple(std), images.device)
    x = ((images.float() / 255.0 - m) / s).permute(0, 3, 1, 2)
    return x if images.is_cuda else x.contiguous()


# ----------------------------------------------------------------------------- epochs


@dataclass
class TrainingState:
    """What a resumed run needs: weights, optimizer, epoch, generator, the log so far."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: Path, tag: str) -> None:
        payload = {"tag": tag, "epoch": self.epoch, "rows": self.rows,
                   "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                   "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                   "torch_rng": torch.get_rng_state()}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load(self, path: Path, tag: str, epochs: int) -> None:
        """Resume from `path`, read with the weights-only unpickler (a resume file in a folder
        someone else handed over cannot run code); every part is checked before any is used."""
        payload = load_torch_file(path, "resume file", fix=_START_AGAIN)
        if not isinstance(payload, dict):
            raise NcVizError(f"{path}: not a resume file of ncviz (it holds a {type(payload).__name__}); {_START_AGAIN}")
        if payload.get("tag") != tag:
            raise NcVizError(f"{path}: a resume file of other settings; {_START_AGAIN}")
        problem = _resume_problem(payload, epochs)
        if problem:
            raise NcVizError(f"{path}: not a usable resume file ({problem}); {_START_AGAIN}")
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.generator.set_state(payload["generator"])
            torch.set_rng_state(payload["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise NcVizError(f"{path}: not a usable resume file ({first_line(exc)}); {_START_AGAIN}") from None
        for group in self.optimizer.param_groups:  # a buffer of another shape would fail mid-epoch
            for param in group["params"]:
                buffer = self.optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is not None and (not isinstance(buffer, torch.Tensor) or buffer.shape != param.shape):
                    raise NcVizError(f"{path}: not a usable resume file (a momentum buffer does not match its "
                                     f"weight's shape); {_START_AGAIN}")
        self.epoch, self.rows = payload["epoch"], [dict(row) for row in payload["rows"]]


_START_AGAIN = "remove its folder to train that run from the start"


def _resume_problem(payload: dict[str, Any], epochs: int) -> str | None:
    """What is wrong with the parts of a resume file, or None."""
    epoch, rows = payload.get("epoch"), payload.get("rows")
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch <= epochs):
        return f"epoch {str(epoch)[:20]!r} is not an epoch count in 0..{epochs}"
    if not (isinstance(rows, list) and len(rows) == epoch and all(
            isinstance(r, dict) and set(r) == set(LOG_FIELDS)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r.values()) for r in rows)):
        return f"its log is not {epoch} rows of {', '.join(LOG_FIELDS)}"
    model, optimizer = payload.get("model"), payload.get("optimizer")
    if not (isinstance(model, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items())):
        return "its weights are not a state dict of tensors"
    if not isinstance(optimizer, dict):
        return "its optimizer state is not a dict"
    for key in ("generator", "torch_rng"):
        value = payload.get(key)
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1):
            return f"its random generator state {key!r} is not a byte tensor"
    return None


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD over every parameter, as published (weight decay on NC and BatchNorm parameters too)."""
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)


def train_epoch(state: TrainingState, images: torch.Tensor, labels: torch.Tensor, spec: ModelSpec,
                recipe: Recipe, device: torch.device) -> dict[str, float]:
    """One epoch over the data on `device`; loss and accuracy are read back once, at the end."""
    epoch = state.epoch + 1
    lr = recipe.lr_at(epoch)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    draws = EpochDraws.draw(len(labels), recipe.pad, state.generator).to(device)
    model = state.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    started = time.perf_counter()
    for batch in draws.order.split(recipe.batch_size):
        x = crop_and_flip(images[batch], draws.offsets[batch], draws.flips[batch] if recipe.flip else None,
                          recipe.pad)
        x, y = normalise(x, spec.preprocess.mean, spec.preprocess.std), labels[batch]
        with autocast(device):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        loss_sum += loss.detach() * len(batch)
        correct += (logits.detach().argmax(1) == y).sum()
    count = max(len(labels), 1)
    row = {"epoch": epoch, "loss": float(loss_sum) / count, "accuracy": int(correct) / count, "lr": lr,
           "seconds": round(time.perf_counter() - started, 3)}
    state.epoch = epoch
    state.rows.append(row)
    return row


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, spec: ModelSpec,
                      batch_size: int, device: torch.device) -> float:
    """Top-1 accuracy on uint8 images held on `device` (one read back)."""
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    for start in range(0, len(labels), batch_size):
        with autocast(device):
            logits = model(normalise(images[start:start + batch_size], spec.preprocess.mean, spec.preprocess.std))
        correct += (logits.argmax(1) == labels[start:start + batch_size]).sum()
    return int(correct) / max(len(labels), 1)


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """The per-epoch CSV log, rewritten whole (atomically) after every epoch."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's result, or None when the run has none (a resume file or nothing yet).

    What `sweep` reads of it is checked: a result that is not JSON, or whose accuracy is not a
    number in [0, 1], is an NcVizError naming the file (never a number in the table)."""
    path = run_dir / RESULT_NAME
    if not os.path.lexists(path):
        return None
    result = read_json_object(path, "run result", fix=_START_AGAIN)
    accuracy, epochs = result.get("test_accuracy"), result.get("epochs")
    if not (isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool) and 0 <= accuracy <= 1):
        raise NcVizError(f"{path}: not a usable run result (test_accuracy {str(accuracy)[:20]!r} is not a "
                         f"number in 0..1); {_START_AGAIN}")
    if not isinstance(result.get("tag"), str) or not isinstance(epochs, int):
        raise NcVizError(f"{path}: not a usable run result (no tag or epoch count); {_START_AGAIN}")
    return result


@dataclass
class DataOnDevice:
    """Train and test images (uint8, NHWC) and labels on the training device, with class names."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]

    @classmethod
    def from_sets(cls, train: Any, test: Any, device: torch.device) -> "DataOnDevice":
        """From two `train.ImageSet`s."""
        return cls(train.images.to(device), train.labels.to(device), test.images.to(device),
                   test.labels.to(device), tuple(train.classes))


def train_run(run_dir: Path, spec: ModelSpec, recipe: Recipe, data: DataOnDevice, device: torch.device,
              tag: str, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one model in `run_dir`, resuming or skipping as its files say; returns its result."""
    done = read_result(run_dir)
    if done is not None and done.get("tag") == tag:
        log.info("%s: finished before, skipped", run_dir)
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    model = prepare_model(spec.build(len(data.classes)), device)
    state = TrainingState(model, make_optimizer(model, recipe), torch.Generator().manual_seed(spec.seed))
    if os.path.lexists(run_dir / RESUME_NAME):  # anything there is checked: a FIFO is named, not skipped
        state.load(run_dir / RESUME_NAME, tag, recipe.epochs)
        log.info("%s: resumed after epoch %d", run_dir, state.epoch)
    while state.epoch < recipe.epochs:
        row = train_epoch(state, data.train_images, data.train_labels, spec, recipe, device)
        state.save(run_dir / RESUME_NAME, tag)
        write_log(run_dir / LOG_NAME, state.rows)
        if on_epoch:
            on_epoch(row)
    return finish_run(run_dir, spec, recipe, data, device, state, tag)


def finish_run(run_dir: Path, spec: ModelSpec, recipe: Recipe, data: DataOnDevice, device: torch.device,
               state: TrainingState, tag: str) -> dict[str, Any]:
    """Test accuracy, the checkpoint, result.json (the mark of a finished run); the resume file goes."""
    acc = evaluate_accuracy(state.model, data.test_images, data.test_labels, spec, recipe.test_batch_size, device)
    meta = spec.meta(data.classes, {"test_accuracy": acc, "epochs": recipe.epochs})
    save_checkpoint(run_dir / MODEL_NAME, state.model, meta)
    result = {"tag": tag, "arch": spec.arch, "reduction": spec.reduction, "seed": spec.seed,
              "test_accuracy": acc, "epochs": state.epoch,
              "train_seconds": round(sum(r["seconds"] for r in state.rows), 3)}
    atomic_write(run_dir / RESULT_NAME, lambda f: f.write(json.dumps(result, indent=2).encode("utf-8")))
    (run_dir / RESUME_NAME).unlink(missing_ok=True)
    log.info("%s: test accuracy %.4f", run_dir, acc)
    return result
