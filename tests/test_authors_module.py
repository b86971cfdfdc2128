"""The NeMo authors' module conventions: the 'paper' ViT module's ReLU + Linear task head, and
weight retention counted over Linear layers only."""

from __future__ import annotations

import torch
from torch import nn

from bench.models.vit import deit_s, vit_s
from bench.modular.extract import extract
from bench.modular.head import attach_head
from bench.modular.masking import attach_generators, maskable_units
from bench.pipeline.metrics import count_linear_params, count_params


def _keep_half(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: torch.arange(unit.num_units) % 2 == 0 for name, unit in maskable_units(model)}


def test_paper_module_task_head_is_relu_then_linear_on_the_class_token():
    torch.manual_seed(0)
    model = attach_generators(deit_s(10, width=0.25, depth=3)).eval()
    module = attach_head(extract(model, _keep_half(model), mode="paper"), 10, 3)
    relu, linear = module.head
    assert isinstance(relu, nn.ReLU) and isinstance(linear, nn.Linear)
    assert module.head_dist is None and linear.out_features == 3
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = module.forward_features(x)[:, 0]
        assert torch.allclose(module(x), linear(features.clamp(min=0)))
        assert not torch.allclose(module(x), linear(features))  # the ReLU really cuts negative features


def test_exact_module_task_head_stays_a_linear():
    model = attach_generators(vit_s(10, width=0.25, depth=2)).eval()
    module = attach_head(extract(model, _keep_half(model), mode="exact"), 10, 2)
    assert isinstance(module.head, nn.Linear)


def test_linear_params_count_only_linear_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(4), nn.Linear(4, 2), nn.Linear(2, 2, bias=False))
    assert count_linear_params(model) == 4 * 2 + 2 + 2 * 2
    assert count_params(model) == count_linear_params(model) + 3 * 4 * 9 + 4 + 2 * 4


def test_vit_linear_params_leave_out_embeddings_and_norms():
    model = vit_s(10, width=0.25, depth=2)
    embeddings = sum(p.numel() for p in (model.cls_token, model.pos_embed, *model.patch_embed.parameters()))
    norms = sum(p.numel() for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters())
    assert count_linear_params(model) == count_params(model) - embeddings - norms
