"""Numbers and names several layers share, defined once. No torch here.

- `IMAGENET_MEAN`, `IMAGENET_STD`: the per-channel normalisation of torchvision's ImageNet
  weights (and timm's default when a model's config names none).
- `CIFAR_MEAN`, `CIFAR_STD`: CIFAR-100's training-set statistics, as the published CIFAR code
  normalises (`ncviz train`, the CIFAR ResNets).
- `SYNTH_MEAN`, `SYNTH_STD`: the normalisation of the synthetic shapes that `ncviz train` and
  `ncviz sweep` train on (and that their checkpoints record).
- `IMAGE_SUFFIXES`: the file suffixes (compared in lower case) that count as images, for a
  `batch` folder and for every data-set reader alike: formats PIL decodes and `load_image`
  turns into 8-bit RGB (a GIF's first frame, its transparency over white). Ordered: a reader
  that looks for `<stem><suffix>` tries them in this order.
"""
from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)
SYNTH_MEAN = (0.5, 0.5, 0.5)
SYNTH_STD = (0.25, 0.25, 0.25)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
