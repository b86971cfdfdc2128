"""Physical extraction of CNN modules: conv kernels removed, residual joins over the union.

A kept channel of MobileNetV2's ``InvertedUnit`` keeps its depthwise filter (``sliced_conv_unit``);
a block without a join (a nested ``nn.Sequential``) is extracted layer by layer.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.models.cnn import CNN
from bench.models.layers import ConvUnit, Residual
from bench.modular.layers import ExtractedResidual
from bench.modular.slicing import sliced_conv_unit, sliced_linear

PASSTHROUGH = (nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.ReLU)  # zero channels stay zero


def extract_cnn(model: CNN, masks: dict[str, torch.Tensor], soft_masks: bool = False) -> CNN:
    """``model`` with only the ``masks`` channels; ``soft_masks``: kept units keep their sliced generators."""
    live = torch.ones(3, dtype=torch.bool)  # live channels of the current tensor, over the full width
    features, live = _extract_sequence(model.features, "features", live, _Cut(masks, soft_masks))
    return CNN(features, _extract_classifier(model.classifier, live), model.num_classes)


class _Cut:
    """What every layer's extraction reads: the kept channels per unit, and whether generators come along."""

    def __init__(self, masks: dict[str, torch.Tensor], soft_masks: bool) -> None:
        self.masks = masks
        self.soft_masks = soft_masks


def _extract_sequence(seq: nn.Sequential, prefix: str, live: torch.Tensor,
                      cut: _Cut) -> tuple[nn.Sequential, torch.Tensor]:
    layers = []
    for name, layer in seq.named_children():
        layer, live = _extract_layer(layer, f"{prefix}.{name}", live, cut)
        layers.append(layer)
    return nn.Sequential(*layers), live


def _extract_layer(layer: nn.Module, name: str, live: torch.Tensor, cut: _Cut) -> tuple[nn.Module, torch.Tensor]:
    """The shrunk copy of ``layer`` and the live channels of its output."""
    if isinstance(layer, ConvUnit):
        out = cut.masks.get(name, torch.ones(layer.num_units, dtype=torch.bool))
        return sliced_conv_unit(layer, live, out, cut.soft_masks and name in cut.masks), out
    if isinstance(layer, Residual):
        body, body_live = _extract_sequence(layer.body, f"{name}.body", live, cut)
        shortcut, shortcut_live = None, live
        if layer.shortcut is not None:
            shortcut, shortcut_live = _extract_layer(layer.shortcut, f"{name}.shortcut", live, cut)
        union = body_live | shortcut_live
        position = union.long().cumsum(0) - 1  # position of each full-width channel within the union
        residual = ExtractedResidual(body, shortcut, position[body_live], position[shortcut_live],
                                     int(union.sum()), layer.relu)
        return residual, union
    if isinstance(layer, nn.Sequential):
        return _extract_sequence(layer, name, live, cut)
    if isinstance(layer, PASSTHROUGH):
        return copy.deepcopy(layer), live
    raise ValueError(f"cannot extract {type(layer).__name__} at {name!r}: CNN features may hold only "
                     "ConvUnit, Residual, Sequential, MaxPool2d, AdaptiveAvgPool2d, Dropout and ReLU")


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
