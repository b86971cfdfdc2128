"""Physical extraction: a smaller ``nn.Module`` holding only a module's retained units.

``extract(model, keep)`` copies the retained weights of ``model`` into new, smaller layers. In
'exact' mode the result computes what ``fix_masks(model, keep)`` computes (the modular model with
each generator replaced by its fixed 0/1 mask), with fewer parameters and FLOPs. CNNs are handled
here, ViTs in ``bench.extract_vit`` (which also has the 'paper' mode: NeMo's ViT module build).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.extract_vit import ExtractedViT, extract_vit, sliced_linear
from bench.models.cnn import CNN
from bench.models.layers import ConvUnit, Residual, units
from bench.models.vit import ViT

__all__ = ["ExtractedResidual", "ExtractedViT", "extract"]

MODES = ("exact", "paper")
PASSTHROUGH = (nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.ReLU)  # zero channels stay zero


class ExtractedResidual(nn.Module):
    """``body(x) + shortcut(x)`` over the union of their channels (``width``), then optional ReLU.

    Each branch's channels are added at their positions within the union (``body_index``,
    ``shortcut_index``); an absent shortcut is the identity.
    """

    def __init__(self, body: nn.Sequential, shortcut: ConvUnit | None, body_index: torch.Tensor,
                 shortcut_index: torch.Tensor, width: int, relu: bool) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.register_buffer("body_index", body_index)
        self.register_buffer("shortcut_index", shortcut_index)
        self.width = width
        self.relu = relu
        # when one branch already spans the union in order, add the other into it (no zero buffer)
        everything = torch.arange(width, device=body_index.device)
        self.onto = ("shortcut" if torch.equal(shortcut_index, everything)
                     else "body" if torch.equal(body_index, everything) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if self.onto == "shortcut":
            out = s.index_add(1, self.body_index, y)
        elif self.onto == "body":
            out = y.index_add(1, self.shortcut_index, s)
        else:
            out = y.new_zeros(y.shape[0], self.width, y.shape[2], y.shape[3])  # (batch, union, h, w)
            out = out.index_add(1, self.body_index, y).index_add(1, self.shortcut_index, s)
        return torch.relu(out) if self.relu else out


def extract(model: nn.Module, keep: dict[str, torch.Tensor], mode: str = "exact") -> nn.Module:
    """A physically smaller copy of ``model`` holding only the retained units.

    ``keep`` maps a unit's qualified name (as in ``bench.models.layers.units``) to a bool tensor
    (num_units,) of retained outputs; a unit absent from ``keep`` is kept whole (its generator,
    if any, is dropped). ``model`` is not modified; the result has no generators, is trainable
    and is in ``model``'s train/eval state. ``mode`` 'paper' (ViTs only) builds NeMo's module.
    """
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; choose one of {', '.join(MODES)}")
    masks = _checked_masks(model, keep)
    if isinstance(model, CNN):
        if mode == "paper":
            raise ValueError("mode 'paper' is NeMo's ViT module build; use mode 'exact' for a CNN")
        result = _extract_cnn(model, masks)
    elif isinstance(model, ViT):
        result = extract_vit(model, masks, mode)
    else:
        raise TypeError(f"cannot extract a {type(model).__name__}: only the zoo's CNN and ViT are supported")
    reference = next(model.parameters())
    return result.to(device=reference.device, dtype=reference.dtype).train(model.training)


def _checked_masks(model: nn.Module, keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``keep`` as 1-D bool CPU tensors, after checking names, lengths and non-emptiness."""
    named = dict(units(model))
    masks = {}
    for name, mask in keep.items():
        if name not in named:
            raise ValueError(f"keep names {name!r}, which is not a unit of the model "
                             "(see bench.models.layers.units)")
        mask = torch.as_tensor(mask).detach().cpu()
        if mask.dim() != 1 or len(mask) != named[name].num_units:
            raise ValueError(f"keep mask for {name!r} has shape {tuple(mask.shape)}; "
                             f"expected ({named[name].num_units},)")
        mask = mask != 0
        if not mask.any():
            raise ValueError(f"keep mask for {name!r} retains no unit; a module keeps at least one per layer")
        masks[name] = mask
    return masks


def _extract_cnn(model: CNN, masks: dict[str, torch.Tensor]) -> CNN:
    live = torch.ones(3, dtype=torch.bool)  # live channels of the current tensor, over the full width
    features, live = _extract_sequence(model.features, "features", live, masks)
    return CNN(features, _extract_classifier(model.classifier, live), model.num_classes)


def _extract_sequence(seq: nn.Sequential, prefix: str, live: torch.Tensor,
                      masks: dict[str, torch.Tensor]) -> tuple[nn.Sequential, torch.Tensor]:
    layers = []
    for name, layer in seq.named_children():
        layer, live = _extract_layer(layer, f"{prefix}.{name}", live, masks)
        layers.append(layer)
    return nn.Sequential(*layers), live


def _extract_layer(layer: nn.Module, name: str, live: torch.Tensor,
                   masks: dict[str, torch.Tensor]) -> tuple[nn.Module, torch.Tensor]:
    """The shrunk copy of ``layer`` and the live channels of its output."""
    if isinstance(layer, ConvUnit):
        out = masks.get(name, torch.ones(layer.num_units, dtype=torch.bool))
        return _sliced_conv_unit(layer, live, out), out
    if isinstance(layer, Residual):
        body, body_live = _extract_sequence(layer.body, f"{name}.body", live, masks)
        shortcut, shortcut_live = None, live
        if layer.shortcut is not None:
            shortcut, shortcut_live = _extract_layer(layer.shortcut, f"{name}.shortcut", live, masks)
        union = body_live | shortcut_live
        position = union.long().cumsum(0) - 1  # position of each full-width channel within the union
        residual = ExtractedResidual(body, shortcut, position[body_live], position[shortcut_live],
                                     int(union.sum()), layer.relu)
        return residual, union
    if isinstance(layer, PASSTHROUGH):
        return copy.deepcopy(layer), live
    raise ValueError(f"cannot extract {type(layer).__name__} at {name!r}: CNN features may hold only "
                     "ConvUnit, Residual, MaxPool2d, AdaptiveAvgPool2d, Dropout and ReLU")


def _sliced_conv_unit(unit: ConvUnit, live: torch.Tensor, out: torch.Tensor) -> ConvUnit:
    """A ConvUnit computing the ``out`` channels of ``unit`` from its ``live`` input channels."""
    conv = unit.conv
    if conv.groups != 1 or len(live) != conv.in_channels:
        raise ValueError(f"cannot slice a conv with groups={conv.groups} and {conv.in_channels} inputs "
                         f"fed by {len(live)} channels")
    rows, cols = out.nonzero().flatten(), live.nonzero().flatten()
    new = ConvUnit(len(cols), len(rows), bias=conv.bias is not None, bn=unit.bn is not None, relu=unit.relu)
    # its conv (and BN, below) are replaced by sliced copies keeping kernel, stride, padding, ...
    new.conv = nn.Conv2d(len(cols), len(rows), conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                         bias=conv.bias is not None, padding_mode=conv.padding_mode,
                         device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.conv.weight.copy_(conv.weight[rows][:, cols])
        if conv.bias is not None:
            new.conv.bias.copy_(conv.bias[rows])
    if unit.bn is not None:
        new.bn = _sliced_bn(unit.bn, rows)
    return new


def _sliced_bn(bn: nn.BatchNorm2d, rows: torch.Tensor) -> nn.BatchNorm2d:
    """A BatchNorm2d over ``rows`` of ``bn``: affine parameters and running statistics copied."""
    new = nn.BatchNorm2d(len(rows), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    with torch.no_grad():
        for name, tensor in [*new.named_parameters(), *new.named_buffers()]:
            source = getattr(bn, name)
            tensor.copy_(source if name == "num_batches_tracked" else source[rows])
    return new


def _extract_classifier(classifier: nn.Sequential, live: torch.Tensor) -> nn.Sequential:
    """The classifier with its first Linear reading only the live channels of the flattened features."""
    layers: list[nn.Module] = []
    first = True
    for layer in classifier:
        if isinstance(layer, nn.Linear) and not first:
            layers.append(sliced_linear(layer))
        elif isinstance(layer, nn.Linear):
            first = False
            if layer.in_features % len(live):
                raise ValueError(f"classifier input {layer.in_features} is not a multiple of the "
                                 f"{len(live)} feature channels")
            hw = layer.in_features // len(live)  # flattened positions per channel (channel-major)
            cols = (live.nonzero() * hw + torch.arange(hw)).flatten()
            layers.append(sliced_linear(layer, cols=cols))
        elif isinstance(layer, (nn.Dropout, nn.ReLU)):
            layers.append(copy.deepcopy(layer))
        else:
            raise ValueError(f"cannot extract {type(layer).__name__} in the classifier: it may hold only "
                             "Linear, ReLU and Dropout")
    return nn.Sequential(*layers)
