"""Train a baseline and an NC model of the same small ResNet, seeded, on the CPU or a GPU.

The data sets are held in memory as uint8 tensors (synthetic shapes, or CIFAR-100 read
from disk in torchvision's layout, never downloaded); augmentation is a random
horizontal flip and a small random shift. Checkpoints are written in the project's format
with class names and preprocessing in the metadata, so `compare` needs no flags.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...models.checkpoints import ModelMeta, save_checkpoint
from ...models.preprocessing import Preprocess
from ...core.constants import CIFAR_MEAN, CIFAR_STD, SYNTH_MEAN, SYNTH_STD
from ...core.errors import ParameterError, UsageError
from ...models import build_model, get_arch, get_family

log = logging.getLogger(__name__)


def training_preprocess(data: str = "synthetic", size: int = 64) -> Preprocess:
    """The input of a model trained here, as its checkpoint records it: CIFAR-100 (`data`
    "cifar100") at 32 px with its statistics, else the synthetic shapes at `size` with theirs.
    The images are already at the input size: nothing is cropped (`crop_pct` 1)."""
    if data == "cifar100":
        return Preprocess(32, CIFAR_MEAN, CIFAR_STD, crop_pct=1.0)
    return Preprocess(size, SYNTH_MEAN, SYNTH_STD, crop_pct=1.0)


@dataclass
class ImageSet:
    """Images (N, H, W, 3) uint8 and labels (N,) int64 in memory, with class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.numel())


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved into the checkpoint metadata."""

    arch: str = "resnet20"
    preprocess: Preprocess = training_preprocess()   # input size and normalisation
    stem_stride: int = 2
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    reduction: int = 8
    placement: str = "stages"
    extra: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size


# ----------------------------------------------------------------------------- data


def synthetic_set(count: int, seed: int, size: int = 64) -> ImageSet:
    """Generate `count` synthetic-shapes samples of data set `seed` into memory."""
    from ...datasets.synth import CLASS_NAMES, generate_sample

    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    for i in range(count):
        sample = generate_sample(i, seed, size)
        images[i], labels[i] = sample.image, sample.label
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), tuple(CLASS_NAMES))


def cifar100_set(data_dir: str | Path, train: bool) -> ImageSet:
    """CIFAR-100 from `data_dir` in torchvision's layout, read without running code from its
    pickles (`cifar_files`); no download is ever attempted."""
    from ...datasets.cifar import read_split

    images, labels, classes = read_split(data_dir, train)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), classes)


def to_input(images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W), normalised by `preprocess`' mean and std."""
    from .recipe import channel_stats

    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    m, s = (t.view(1, 3, 1, 1) for t in channel_stats(tuple(preprocess.mean), tuple(preprocess.std), images.device))
    return (x - m) / s


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 4) -> torch.Tensor:
    """Random horizontal flips and shifts of up to `shift` pixels (reflect padding)."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device, non_blocking=True)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (shift,) * 4, mode="reflect")
    dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]


# ----------------------------------------------------------------------------- training


def synthetic_stem_stride(arch: str) -> int:
    """Stem stride for the synthetic images: 2 where the family takes one (CIFAR ResNets, built
    for 32 px, then see 32-px maps at 64 px), else 1 (ImageNet models downsample on their own)."""
    return 2 if get_family(get_arch(arch).family).stem_stride else 1


def meta_for(config: TrainConfig, arch: str, classes: Sequence[str]) -> ModelMeta:
    """The checkpoint metadata of a model trained with `config`."""
    nc = get_arch(arch).nc
    return ModelMeta(arch=arch, num_classes=len(classes), class_names=tuple(classes),
                     preprocess=config.preprocess,
                     reduction=config.reduction if nc else None, placement=config.placement if nc else None,
                     stem_stride=config.stem_stride, extra=dict(config.extra))


def build_for_training(config: TrainConfig, arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model, seeded by the config."""
    torch.manual_seed(config.seed)
    kwargs = {"input_size": config.input_size, "stem_stride": config.stem_stride}
    if get_arch(arch).nc:
        kwargs.update(reduction=config.reduction, placement=config.placement)
    try:
        return build_model(arch, num_classes, **kwargs)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def train_model(model: nn.Module, train: ImageSet, config: TrainConfig,
                on_step: Callable[[int, int, float], None] | None = None,
                max_steps: int | None = None, device: torch.device | str = "cpu") -> dict[str, float]:
    """SGD with Nesterov momentum and a one-cycle schedule; returns loss and time.

    On CUDA the data are held on the GPU, the model runs channels_last under bf16 autocast, and
    the loss is read back once per epoch (`on_step` sees the last epoch's mean meanwhile).
    """
    from .recipe import autocast, prepare_model

    device = torch.device(device)
    cuda = device.type == "cuda"
    model = prepare_model(model, device)
    images, labels = train.images.to(device), train.labels.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs if max_steps is None else min(max_steps, steps_per_epoch * config.epochs)
    optimiser = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=max(total, 1),
                                                   pct_start=0.15)
    model.train()
    start, step, loss_value = time.perf_counter(), 0, float("nan")
    while step < total:
        order = torch.randperm(len(train), generator=generator).to(device)
        loss_sum, batches = torch.zeros((), device=device), 0
        for batch in order.split(config.batch_size):
            if step >= total:
                break
            x = augment(to_input(images[batch], config.preprocess), generator)
            with autocast(device):
                loss = F.cross_entropy(model(x).float(), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step, batches = step + 1, batches + 1
            if cuda:  # no host synchronisation per step
                loss_sum += loss.detach()
            else:
                loss_value = float(loss.detach())
            if on_step:
                on_step(step, total, loss_value)
        if cuda and batches:
            loss_value = float(loss_sum) / batches
    model.eval()
    return {"steps": step, "final_loss": loss_value, "seconds": time.perf_counter() - start}


@torch.no_grad()
def accuracy(model: nn.Module, data: ImageSet, config: TrainConfig, batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` on `data` (on the model's device, in float32; one read back)."""
    model.eval()
    device = next(model.parameters(), torch.zeros(())).device
    images, labels = data.images.to(device), data.labels.to(device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, len(data), batch_size):
        x = to_input(images[start:start + batch_size], config.preprocess)
        correct += (model(x).argmax(1) == labels[start:start + batch_size]).sum()
    return int(correct) / max(len(data), 1)


@dataclass
class TrainReport:
    """What one `ncviz train` run produced."""

    paths: dict[str, Path]
    accuracy: dict[str, float]
    seconds: dict[str, float]
    config: TrainConfig


OUTPUT_NAMES = {"baseline": "baseline.pt", "nc": "nc.pt"}


def check_outputs(out_dir: str | Path, names: dict[str, str] | None = None, overwrite: bool = False) -> None:
    """Before any training: the checkpoints to be written are not the shipped demo pair nor the pair
    `NCVIZ_PRETRAINED` points at (never, whatever `overwrite` says), and not an existing file unless
    `overwrite` (a checkpoint is hours of work)."""
    from ...pair import DEFAULT_BASELINE, DEFAULT_NC, PRETRAINED_DIR
    from ..guards import check_outputs_distinct

    targets = [Path(out_dir) / name for name in (names or OUTPUT_NAMES).values()]
    roots = {PRETRAINED_DIR: "the shipped demo pair"}
    if os.environ.get("NCVIZ_PRETRAINED"):
        roots[Path(os.environ["NCVIZ_PRETRAINED"])] = "the pair NCVIZ_PRETRAINED points at"
    shipped = [(root / name, f"a checkpoint of {label}") for root, label in roots.items()
               for name in (DEFAULT_BASELINE, DEFAULT_NC)]
    check_outputs_distinct(shipped, targets)
    existing = [t for t in targets if os.path.lexists(t)]
    if existing and not overwrite:
        raise ParameterError("overwrite", f"{existing[0]}: exists (a checkpoint); give another -o, or {{param}} "
                                          f"to replace it")


def train_pair(config: TrainConfig, train: ImageSet, held_out: ImageSet, out_dir: Path,
               names: dict[str, str] | None = None,
               on_step: Callable[[str, int, int, float], None] | None = None,
               max_steps: int | None = None, half: bool = False, device: torch.device | str = "cpu",
               overwrite: bool = False) -> TrainReport:
    """Train `arch` and `arch_nc` on the same data and seed on `device`; write both checkpoints
    (`check_outputs` first: an existing checkpoint is replaced only with `overwrite`).

    Accuracy is measured on the weights as saved (float16 ones too, with `half`).
    """
    arches = {"baseline": config.arch.removesuffix("_nc"), "nc": config.arch.removesuffix("_nc") + "_nc"}
    names = names or OUTPUT_NAMES
    check_outputs(out_dir, names, overwrite)
    paths, acc, seconds = {}, {}, {}
    for role, arch in arches.items():
        model = build_for_training(config, arch, len(train.classes))
        step_hook = (lambda s, t, loss, role=role: on_step(role, s, t, loss)) if on_step else None
        stats = train_model(model, train, config, step_hook, max_steps, device)
        if half:  # what is measured is what is shipped
            model.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                                   for k, v in model.state_dict().items()})
        acc[role] = accuracy(model, held_out, config)
        seconds[role] = stats["seconds"]
        meta = meta_for(replace(config, extra={**config.extra, "held_out_accuracy": round(acc[role], 4)}),
                        arch, train.classes)
        paths[role] = save_checkpoint(out_dir / names[role], model, meta, half=half)
        log.info("%s: %s held-out accuracy %.4f in %.0f s", role, arch, acc[role], stats["seconds"])
    return TrainReport(paths, acc, seconds, config)
