"""Training: `train` (a baseline and its NC twin), `recipe` (the published CIFAR recipe, epoch by
epoch, resumable) and `sweep` (the supplement's Table 1 over reduction ratios and seeds)."""
