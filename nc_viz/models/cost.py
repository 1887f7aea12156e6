"""What a forward pass costs: multiply-adds counted on one input, a machine-free measure of the
CPU work of a model (used to split the cores between forward passes and rendering)."""
from __future__ import annotations

import math

import torch
from torch import nn

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def _multiply_adds(module: nn.Module, output: torch.Tensor) -> int:
    """A convolution's or linear layer's multiply-adds for `output`: one per output element and
    input element of its window."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def multiply_adds(model: nn.Module, input_size: int, channels: int = 3) -> int:
    """Multiply-adds of the convolutions and linear layers of one forward pass of `model` on one
    `channels` x `input_size` x `input_size` image (zeros, on the model's device). Other layers
    (normalisation, pooling, activations) are left out: they are a small share of a CNN's work."""
    total = 0

    def count(module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += _multiply_adds(module, output)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, _COUNTED)]
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return total
