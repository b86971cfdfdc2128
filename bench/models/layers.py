"""The units that masking and extraction act on, and the residual block that joins them.

A *unit* is a layer whose output channels (conv) or features (linear) can be switched off one by
one: it may carry a mask ``generator`` (attached by ``bench.masking``) whose per-sample mask in
[0, 1) multiplies the layer's output. Without a generator the unit is a plain layer, so the
standard model and the modular model share one architecture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def keep_last_mask(unit: nn.Module, mask: torch.Tensor) -> None:
    """Keep a unit's last mask for the mask losses and activity counts (not in an exported program, which
    holds no state between calls)."""
    if not torch.compiler.is_exporting():
        unit.mask = mask


class ConvUnit(nn.Module):
    """conv -> BN (optional) -> x mask (when a generator is attached) -> ReLU (optional)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
        bn: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels) if bn else None
        self.relu = relu
        self.generator: nn.Module | None = None
        self.mask: torch.Tensor | None = None

    @property
    def num_units(self) -> int:
        """Output channels: the kernels a module can keep or drop."""
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return self.masked(x, y)

    def masked(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` (batch, units, h, w) times the mask the generator computes from the unit's input ``x``, then ReLU."""
        if self.generator is not None:
            mask = self.generator(x)  # (batch, out_channels), in the generator's dtype
            keep_last_mask(self, mask)
            y = y * mask.to(y.dtype)[:, :, None, None]
        return F.relu(y) if self.relu else y

    def signal(self, output: torch.Tensor) -> torch.Tensor:
        """Per-sample channel activations (batch, units): the mean post-ReLU value of each feature map
        (of its positive part, for a unit without its own ReLU)."""
        return F.relu(output).mean(dim=(2, 3))

    def activity(self, output: torch.Tensor) -> torch.Tensor:
        """Per-sample active channels (batch, units): mask > 0, or a positive signal."""
        if self.generator is not None and self.mask is not None:
            return self.mask > 0
        return self.signal(output) > 0


class InvertedUnit(ConvUnit):
    """MobileNetV2's expansion: 1x1 conv -> BN -> ReLU -> 3x3 depthwise conv -> BN -> x mask -> ReLU.

    A unit is one hidden channel: its expansion kernel (``conv``, ``bn``) and its depthwise filter
    (``depthwise``, ``depthwise_bn``), kept or dropped together. The depthwise channel reads only its
    own expansion channel, so masking it once, after the depthwise BN, zeroes both downstream.
    """

    def __init__(self, in_channels: int, hidden: int, stride: int = 1) -> None:
        super().__init__(in_channels, hidden, kernel_size=1, bias=False)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.bn(self.conv(x)))  # (batch, hidden, h, w)
        return self.masked(x, self.depthwise_bn(self.depthwise(hidden)))


class LinearUnit(nn.Linear):
    """A Linear layer whose output features can be masked per sample (every token alike)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.generator: nn.Module | None = None
        self.mask: torch.Tensor | None = None

    @property
    def num_units(self) -> int:
        """Output features: the neurons a module can keep or drop."""
        return self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.generator is not None:
            mask = self.generator(x)  # (batch, out_features), in the generator's dtype
            keep_last_mask(self, mask)
            mask = mask.to(y.dtype)
            y = y * (mask[:, None, :] if y.dim() == 3 else mask)
        return y

    def signal(self, output: torch.Tensor) -> torch.Tensor:
        """Per-sample neuron activations (batch, units): the positive part of the output, averaged over
        tokens first."""
        return F.relu(output.mean(dim=1) if output.dim() == 3 else output)

    def activity(self, output: torch.Tensor) -> torch.Tensor:
        """Per-sample active neurons (batch, units): mask > 0, or a positive signal."""
        if self.generator is not None and self.mask is not None:
            return self.mask > 0
        return self.signal(output) > 0


class Residual(nn.Module):
    """``body(x) + shortcut(x)``, then ReLU when ``relu``; an absent shortcut is the identity."""

    def __init__(self, body: nn.Sequential, shortcut: ConvUnit | None = None, relu: bool = True) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x) + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(y) if self.relu else y


def units(model: nn.Module) -> list[tuple[str, ConvUnit | LinearUnit]]:
    """Every unit of ``model`` in module order, with its qualified name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (ConvUnit, LinearUnit))]
