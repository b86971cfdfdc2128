"""SeaM's pieces on a tiny CNN: the searched model is the model with each weight times its binarised score, the
weight ratio by hand, and the composed task module places its head's logits in the task's columns."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.models.cnn import mobilenetv2, simcnn
from bench.modular.ensemble import TaskModule
from bench.modular.weight_masks import attach_masks, maskable_layers
from methods.seam import SeaMHparams, WeightReengineer

CLASSES = 4


MODELS = {"simcnn": simcnn, "mobilenetv2": mobilenetv2}


@pytest.fixture(scope="module", params=list(MODELS))
def reengineer(request) -> WeightReengineer:
    torch.manual_seed(0)
    searcher = WeightReengineer(MODELS[request.param](CLASSES, width=0.125).eval(), CLASSES, 2)
    searcher.build = MODELS[request.param]
    with torch.no_grad():
        for scores in searcher.mask_scores():
            scores.copy_(torch.randn_like(scores) + 0.5)
    return searcher


def test_the_search_computes_the_model_with_its_kept_weights_then_the_head(reengineer):
    plain = copy.deepcopy(reengineer.model)
    reference = reengineer.build(CLASSES, width=0.125).eval()
    reference.load_state_dict({k.replace("parametrizations.", "").replace(".original", ""): v
                               for k, v in plain.state_dict().items() if ".0.scores" not in k})
    with torch.no_grad():
        for (_, layer), (_, original) in zip(maskable_layers(reference), maskable_layers(plain), strict=True):
            layer.weight.mul_(original.parametrizations.weight[0].scores > 0)
            if layer.bias is not None:
                layer.bias.mul_(original.parametrizations.bias[0].scores > 0)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(reengineer(x), reengineer.head(reference(x)), atol=1e-5)
    assert isinstance(reengineer.head[0], nn.ReLU) and reengineer.head[1].out_features == 2


def test_the_weight_ratio_by_hand(reengineer):
    scores = reengineer.mask_scores()
    kept = sum(int((s > 0).sum()) for s in scores)
    total = sum(p.numel() for _, layer in maskable_layers(reengineer.build(CLASSES, width=0.125))
                for p in (layer.weight, layer.bias) if p is not None)
    assert sum(s.numel() for s in scores) == total  # every weight and bias of every conv and linear layer
    assert reengineer.kept().item() == pytest.approx(kept / total)
    assert not any(p.requires_grad for name, p in reengineer.model.named_parameters() if "scores" not in name)


def test_the_task_module_fills_the_task_columns_only(reengineer):
    snapshot = reengineer.snapshot()
    masks = {k.removeprefix("mask."): v for k, v in snapshot.items() if k.startswith("mask.")}
    model = reengineer.build(CLASSES, width=0.125).eval()
    module = TaskModule(attach_masks(model, masks), copy.deepcopy(reengineer.head), [3, 1], CLASSES).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = module(x)
        task = module.head(module.model(x))
    assert torch.equal(out[:, [3, 1]], task) and torch.equal(out[:, [0, 2]], torch.zeros(2, 2))


def test_settings_refuse_zero():
    with pytest.raises(ValueError, match="epochs must be positive"):
        SeaMHparams(epochs=0)
