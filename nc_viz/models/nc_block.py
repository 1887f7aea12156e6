"""The NC (neuron communication) block and the wrapper that places it before a module.

The block computes what the published layer code (jwyang/C3Net.pytorch) computes:
resize to the nominal map size, split channels into groups of at most 512, encode every
channel's flattened map with a shared MLP, mix channels with a softmax over negative squared
differences of their mean codes, decode, resize the message back to the input's size, add it
to the ORIGINAL input and apply ReLU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NCBlock", "NCWrapper", "GROUP_WIDTH"]

GROUP_WIDTH = 512
"""Channels per attention group: `g = max(1, C // GROUP_WIDTH)` groups."""


def _mlp(area: int, hidden: int) -> nn.Sequential:
    """Conv1d(A, A/r, 1) -> ReLU -> Conv1d(A/r, A, 1): one MLP over each column of (N, A, L)."""
    return nn.Sequential(nn.Conv1d(area, hidden, 1), nn.ReLU(inplace=False), nn.Conv1d(hidden, area, 1))


class NCBlock(nn.Module):
    """Cross-channel message passing over the channels of a (B, C, H, W) feature map.

    Built for one spatial size `spatial = (h0, w0)`. An input of another size is resized to it
    (nearest) only to compute the message D, which is resized back (nearest) and added to the
    original input: `Y = ReLU(X + resize(D))`. The output has the shape of the input.
    """

    def __init__(self, channels: int, spatial: tuple[int, int], reduction: int = 8) -> None:
        super().__init__()
        h0, w0 = _check_spatial(spatial)
        if channels < 1:
            raise ValueError(f"NC block: channels must be positive, got {channels}")
        if reduction < 1:
            raise ValueError(f"NC block: reduction must be a positive integer, got {reduction}")
        groups = max(1, channels // GROUP_WIDTH)
        if channels % groups != 0:
            raise ValueError(f"NC block: {channels} channels cannot be split into {groups} equal groups")
        area = h0 * w0
        hidden = area // reduction
        if hidden < 1:
            raise ValueError(f"NC block: map {h0}x{w0} (A={area}) is too small for reduction {reduction} "
                             f"(A // reduction must be at least 1)")
        self.channels = channels
        self.spatial = (h0, w0)
        self.reduction = reduction
        self.groups = groups
        self.fc_in = _mlp(area, hidden)
        self.fc_out = _mlp(area, hidden)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial={self.spatial}, reduction={self.reduction}, groups={self.groups}"

    # ------------------------------------------------------------------ steps of 2.2

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"NC block: expected input (B, {self.channels}, H, W), got {tuple(x.shape)}")

    def _resize_in(self, x: torch.Tensor) -> torch.Tensor:
        """Step 1: nearest resize to the nominal size (a no-op at the nominal size)."""
        if tuple(x.shape[-2:]) == self.spatial:
            return x
        return F.interpolate(x, size=self.spatial, mode="nearest")

    def _to_columns(self, x: torch.Tensor) -> torch.Tensor:
        """Step 2: (B, C, h0, w0) -> V (B*g, A, C/g), one column per channel."""
        b = x.shape[0]
        v = x.reshape(b, self.groups, self.channels // self.groups, -1)
        return v.permute(0, 1, 3, 2).reshape(b * self.groups, -1, self.channels // self.groups)

    def _from_columns(self, v: torch.Tensor, batch: int) -> torch.Tensor:
        """Inverse of `_to_columns`: (B*g, A, C/g) -> (B, C, h0, w0)."""
        h0, w0 = self.spatial
        v = v.reshape(batch, self.groups, h0 * w0, self.channels // self.groups)
        return v.permute(0, 1, 3, 2).reshape(batch, self.channels, h0, w0)

    def _encode(self, x_nominal: torch.Tensor) -> torch.Tensor:
        """Steps 2-3: E = fc_in(V)."""
        return self.fc_in(self._to_columns(x_nominal))

    @staticmethod
    def _weights(e: torch.Tensor) -> torch.Tensor:
        """Step 4: a[n, i, j] = softmax_i(-(m_i - m_j)^2), m = mean of E over A."""
        m = e.mean(dim=1)                                 # (N, L)
        scores = -(m.unsqueeze(2) - m.unsqueeze(1)) ** 2  # [n, i, j]
        return torch.softmax(scores, dim=1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights `a` (B*g, C/g, C/g), indexed [group-batch, source i, target j]."""
        self._check_input(x)
        return self._weights(self._encode(self._resize_in(x)))

    def message(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1-5: the message D (B, C, h0, w0), computed at the nominal size."""
        self._check_input(x)
        e = self._encode(self._resize_in(x))
        g = torch.bmm(e, self._weights(e))                # G[:, :, j] = sum_i a_ij E[:, :, i]
        return self._from_columns(self.fc_out(g), x.shape[0])

    def _resize_out(self, d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Step 6, first half: nearest resize of D back to the input's size (a no-op at the nominal size)."""
        if tuple(d.shape[-2:]) == size:
            return d
        return F.interpolate(d, size=size, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Y = ReLU(X + resize(D)) with the ORIGINAL input X at its own resolution."""
        d = self._resize_out(self.message(x), tuple(x.shape[-2:]))
        return torch.relu(x + d)


class NCWrapper(nn.Module):
    """Run an NC block on the input, then the wrapped module (keys `cn.*` and `block.*`)."""

    def __init__(self, cn: NCBlock, block: nn.Module) -> None:
        super().__init__()
        self.cn = cn
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.cn(x))


def _check_spatial(spatial: tuple[int, int]) -> tuple[int, int]:
    """Validate the nominal (h0, w0) and return it as a tuple of ints."""
    try:
        h0, w0 = (int(s) for s in spatial)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"NC block: spatial must be (height, width), got {spatial!r}") from exc
    if h0 < 1 or w0 < 1:
        raise ValueError(f"NC block: spatial size must be positive, got {spatial!r}")
    return h0, w0
