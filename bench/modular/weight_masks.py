"""Unstructured (weight-level) masks: every weight and bias of a model's conv and linear layers kept or
dropped one by one (SeaM), and what such a sparse module costs.

A mask is a ``torch.nn.utils.parametrize`` parametrization of the parameter: during a search
``WeightScores`` multiplies the weight by its binarised scores (``straight_through``); a composed
module carries a fixed ``WeightMask``, so fine-tuning never revives a dropped weight (its gradient
is masked too) and a ``torch.export`` of it computes the same. Such a module has the model's
shape: its saving needs sparse kernels. ``kept_parameters`` and ``sparse_flops`` count what it
would cost with them (a dropped weight is neither stored nor multiplied), as the SeaM authors
count (``count_nonzero`` of the masked weights, ``src/binary_class/calculate_flop.py``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from bench.modular.straight_through import binarize

MASKED_PARAMETERS = ("weight", "bias")


class WeightScores(nn.Module):
    """A search's parametrization: the parameter times ``scores > 0`` (scores start at 1: all kept)."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.ones(shape))

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value * binarize(self.scores).to(value.dtype)


class WeightMask(nn.Module):
    """A composed module's parametrization: the parameter times a fixed 0/1 ``mask``."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.bool())

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.mask.to(value.dtype)


def maskable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv and linear layer of ``model`` (the first conv and the classifier included), in order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _parameters(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, layer, parameter name) of every weight and bias a mask covers."""
    return [(f"{name}.{p}", layer, p) for name, layer in maskable_layers(model) for p in MASKED_PARAMETERS
            if getattr(layer, p, None) is not None]


def attach_scores(model: nn.Module) -> dict[str, nn.Parameter]:
    """Put ``WeightScores`` on every weight and bias of ``model``'s conv and linear layers (in place);
    their scores by qualified parameter name."""
    scores = {}
    for name, layer, p in _parameters(model):
        original = getattr(layer, p)
        parametrize.register_parametrization(layer, p, WeightScores(original.shape).to(original.device))
        scores[name] = getattr(layer.parametrizations, p)[0].scores
    return scores


def attach_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Put a fixed ``WeightMask`` on each parameter ``masks`` names (``features.0.conv.weight``); returns ``model``."""
    layers = dict(maskable_layers(model))
    for name, mask in masks.items():
        layer_name, _, p = name.rpartition(".")
        layer = layers[layer_name]
        parametrize.register_parametrization(layer, p, WeightMask(mask.to(getattr(layer, p).device)))
    return model


def weight_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fixed masks of ``model`` by the qualified name of the parameter they cover (empty: a dense model)."""
    found = {}
    for name, layer in model.named_modules():
        for p, chain in getattr(layer, "parametrizations", {}).items():
            found.update({f"{name}.{p}": m.mask for m in chain if isinstance(m, WeightMask)})
    return found


def is_sparse(model: nn.Module) -> bool:
    """Whether ``model`` carries weight masks (an unstructured sparse module)."""
    return bool(weight_masks(model))


def kept_parameters(model: nn.Module) -> int:
    """Parameters of ``model``, a masked weight counting its kept entries only."""
    dropped = sum(int((~mask).sum()) for mask in weight_masks(model).values())
    return sum(p.numel() for p in model.parameters()) - dropped


def layer_parameters(layer: nn.Module) -> int:
    """The parameters of one layer itself (not its submodules'); a masked one counts its kept entries only."""
    own = sum(p.numel() for p in layer.parameters(recurse=False))
    for chain in getattr(layer, "parametrizations", {}).values():
        masks = [m.mask for m in chain if isinstance(m, WeightMask)]
        own += int(masks[0].sum()) if masks else chain.original.numel()
    return own


def sparse_flops(dense: int, layer_flops: dict[str, int], model: nn.Module) -> int:
    """Multiply-adds of ``model`` when a dropped weight is not multiplied: the ``dense`` count less, per masked
    layer, its multiply-adds (``layer_flops`` by module name) times its share of dropped weights (every
    weight of a conv or linear layer takes part in the same number of multiply-adds)."""
    saved = 0.0
    for name, mask in weight_masks(model).items():
        layer_name, _, p = name.rpartition(".")
        if p == "weight":
            saved += layer_flops.get(layer_name, 0) * float((~mask).sum()) / mask.numel()
    return dense - round(saved)
