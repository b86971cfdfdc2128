"""SeaM's pieces on a tiny CNN: the searched model is the model with each weight times its binarised score, the
weight ratio by hand, and the composed task module places its head's logits in the task's columns; a one-class
task's module is the authors' binary one, its one column target minus rest (tests/test_scenarios.py: it ranks its
class first)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench.data import BatchLoader
from bench.data.builtin import load_synthetic
from bench.grid.scenarios import PatchSettings
from bench.models.cnn import mobilenetv2, simcnn
from bench.modular.ensemble import TaskModule
from bench.modular.weight_masks import attach_masks, maskable_layers
from bench.pipeline.scenarios.patch import STRATEGIES, patch_inputs, patching_covers
from bench.pipeline.stages.reuse import one_class_part
from bench.plugins import get_plugins
from bench.protocol.method import StageContext, TrainedModel
from bench.protocol.recipe import Recipe
from methods.seam import SeaM, SeaMHparams, WeightReengineer

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


def test_a_one_class_module_is_one_column_the_head_target_minus_rest():
    data = load_synthetic(size=64, classes=CLASSES, test_size=8)
    torch.manual_seed(0)
    ctx = StageContext(get_plugins().models.get("simcnn"), data, torch.device("cpu"), Recipe(epochs=1),
                       SeaMHparams(epochs=1), 0.9, lambda: None, seed=0)
    module = SeaM().compose(ctx, TrainedModel(simcnn(CLASSES, width=0.125).eval()), None, (2,)).eval()
    x, _ = next(iter(BatchLoader(data.test, 8, mean=data.mean, std=data.std)))
    with torch.no_grad():
        out, two = module(x), module.head[0](module.model(x))  # (batch, 4), the binary head's (batch, 2)
    assert module.head[0][1].out_features == 2
    assert torch.allclose(out[:, 2], two[:, 0] - two[:, 1])
    assert not out[:, [0, 1, 3]].any()


def test_the_keys_of_a_one_class_module_name_seams_rule():
    """A one-class module's cached stages (its search, outputs, patched classes, reused task) and a record's patched
    classes hold SeaM's rule, so those computed before it was one-vs-rest are computed again; other tasks and
    methods keep their keys."""
    seam, standard = SimpleNamespace(method=SeaM()), SimpleNamespace(method=get_plugins().methods.get("standard"))
    assert one_class_part(seam, (3,)) == {"one_class": "one-vs-rest"}
    assert one_class_part(seam, (3, 1)) == {} and one_class_part(standard, (3,)) == {}
    assert patch_inputs(standard, "a" * 64, "m") == {"model": "a" * 64, "modules": "m"}
    before = {"patching": {"settings": PatchSettings().values(), "inputs": patch_inputs(standard, "a" * 64, "m"),
                           "entries": [{"label": 0, "strategy": s} for s in STRATEGIES]}}
    assert patching_covers(before, PatchSettings(), (0,), patch_inputs(standard, "a" * 64, "m"))
    assert not patching_covers(before, PatchSettings(), (0,), patch_inputs(seam, "a" * 64, "m"))
