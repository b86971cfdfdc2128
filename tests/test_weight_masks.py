"""Unstructured weight masks: what a masked layer computes, what it keeps through fine-tuning and export, and
what it costs (kept weights, the multiply-adds of kept weights beside the dense count), counted by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.modular.weight_masks import (
    attach_masks,
    attach_scores,
    is_sparse,
    kept_parameters,
    maskable_layers,
    weight_masks,
)
from bench.pipeline import metrics


class _Tiny(nn.Module):
    """conv 3->2 (3x3, padding 1) on a 4x4 image, flattened, linear 32->3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def _masks() -> dict[str, torch.Tensor]:
    conv = torch.zeros(2, 3, 3, 3, dtype=torch.bool)
    conv[0] = True  # the first kernel's 27 weights kept, the second's dropped
    fc = torch.zeros(3, 32, dtype=torch.bool)
    fc[:, :8] = True  # 24 of 96 weights kept
    return {"conv.weight": conv, "conv.bias": torch.tensor([True, False]), "fc.weight": fc}


def test_a_masked_layer_computes_with_the_kept_weights_only():
    torch.manual_seed(0)
    model = _Tiny()
    reference = copy.deepcopy(model)
    masked = attach_masks(model, _masks())
    with torch.no_grad():
        reference.conv.weight.mul_(_masks()["conv.weight"])
        reference.conv.bias.mul_(torch.tensor([1.0, 0.0]))
        reference.fc.weight.mul_(_masks()["fc.weight"])
    x = torch.randn(5, 3, 4, 4)
    assert torch.allclose(masked(x), reference(x))
    assert is_sparse(masked) and not is_sparse(_Tiny()) and set(weight_masks(masked)) == set(_masks())


def test_kept_weights_and_their_multiply_adds_counted_by_hand():
    model = attach_masks(_Tiny(), _masks())
    # conv: 27 + 1 (bias) kept of 56; fc: 24 kept weights + its 3 unmasked biases
    assert kept_parameters(model) == metrics.count_params(model) == 27 + 1 + 24 + 3
    assert metrics.count_linear_params(model) == 24 + 3
    # dense: conv 2 x 27 weights at 16 positions = 864, fc 96; sparse: 27 x 16 = 432, fc 24
    assert metrics.flop_counts(model, (1, 3, 4, 4)) == (432 + 24, 864 + 96)
    figures = metrics.sparsity_figures(model, metrics.flop_counts(model, (1, 3, 4, 4)), 1000)
    assert figures == {"sparsity": "unstructured", "flops_dense": 960, "flops_ratio_dense": 0.96}
    assert metrics.sparsity_figures(_Tiny(), (960, 960), 1000) == {}


def test_fine_tuning_never_revives_a_dropped_weight_and_export_computes_the_same():
    torch.manual_seed(0)
    model = attach_masks(_Tiny(), _masks())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3, 4, 4)).square().sum().backward()
        optimizer.step()
    dropped = ~_masks()["fc.weight"]
    assert model.fc.weight[dropped].abs().sum() == 0 and model.fc.weight[~dropped].abs().sum() > 0
    copied = copy.deepcopy(model)
    copied.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 4, 4)
    program = torch.export.export(copied.eval(), (x,)).module()
    assert torch.allclose(program(x), model(x), atol=1e-6)


def test_search_scores_cover_every_conv_and_linear_weight_and_bias():
    from bench.models.cnn import simcnn

    model = simcnn(3, width=0.125)
    scores = attach_scores(model)
    layers = maskable_layers(model)
    assert len(layers) == 13 + 3  # every conv (the first included) and every classifier layer
    assert len(scores) == 2 * len(layers)  # weights and biases
    assert all(torch.equal(s, torch.ones_like(s)) for s in scores.values())
    with pytest.raises(KeyError):
        attach_masks(simcnn(3, width=0.125), {"nowhere.weight": torch.ones(1, dtype=torch.bool)})
