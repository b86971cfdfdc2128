"""Copies of layers restricted to some of their rows and columns: the one place extraction slices weights."""

from __future__ import annotations

import torch
from torch import nn

from bench.models.layers import ConvUnit, InvertedUnit


def sliced_linear(linear: nn.Linear, rows: torch.Tensor | None = None,
                  cols: torch.Tensor | None = None) -> nn.Linear:
    """A new ``nn.Linear`` holding copies of ``linear``'s weight rows/columns (all when None)."""
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def sliced_conv(conv: nn.Conv2d, rows: torch.Tensor, cols: torch.Tensor | None) -> nn.Conv2d:
    """A copy of ``conv`` with output channels ``rows`` and input channels ``cols``; a depthwise conv
    (``cols`` None) keeps the filters of ``rows``, one group each."""
    groups = 1 if cols is not None else len(rows)
    new = nn.Conv2d(len(rows) if cols is None else len(cols), len(rows), conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight[rows] if cols is None else conv.weight[rows][:, cols])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[rows])
    return new


def sliced_conv_unit(unit: ConvUnit, live: torch.Tensor, out: torch.Tensor, soft_masks: bool = False) -> ConvUnit:
    """A ConvUnit computing the ``out`` channels of ``unit`` from its ``live`` input channels.

    An ``InvertedUnit`` keeps the depthwise filter (and depthwise BN) of every kept channel. With
    ``soft_masks`` a unit's mask generator comes along, sliced to those channels (its ``sliced`` method), so
    each kept channel is still scaled by its soft mask; otherwise the generator is dropped.
    """
    conv = unit.conv
    if conv.groups != 1 or len(live) != conv.in_channels:
        raise ValueError(f"cannot slice a conv with groups={conv.groups} and {conv.in_channels} inputs "
                         f"fed by {len(live)} channels")
    rows, cols = out.nonzero().flatten(), live.nonzero().flatten()
    if isinstance(unit, InvertedUnit):
        new = InvertedUnit(len(cols), len(rows), unit.depthwise.stride[0])
        new.depthwise, new.depthwise_bn = sliced_conv(unit.depthwise, rows, None), sliced_bn(unit.depthwise_bn, rows)
    else:
        new = ConvUnit(len(cols), len(rows), bias=conv.bias is not None, bn=unit.bn is not None, relu=unit.relu)
    new.conv = sliced_conv(conv, rows, cols)  # keeps kernel, stride, padding, ...
    new.bn = sliced_bn(unit.bn, rows) if unit.bn is not None else None
    if soft_masks and unit.generator is not None:
        new.generator = unit.generator.sliced(cols, rows).to(device=conv.weight.device)
    return new


def sliced_bn(bn: nn.BatchNorm2d, rows: torch.Tensor) -> nn.BatchNorm2d:
    """A BatchNorm2d over ``rows`` of ``bn``: affine parameters and running statistics copied."""
    new = nn.BatchNorm2d(len(rows), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    with torch.no_grad():
        for name, tensor in [*new.named_parameters(), *new.named_buffers()]:
            source = getattr(bn, name)
            tensor.copy_(source if name == "num_batches_tracked" else source[rows])
    return new


def fresh_norm(norm: nn.LayerNorm, width: int) -> nn.LayerNorm:
    """A newly initialised LayerNorm (weight 1, bias 0) over ``width`` features, as the reference does."""
    w = norm.weight
    return nn.LayerNorm(width, eps=norm.eps, device=w.device, dtype=w.dtype)


def copy_parameter(p: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
