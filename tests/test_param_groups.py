"""Modular training never decays mask generators, biases or normalisation weights: the parameter
groups MaskedMethod.train hands the training loop, and what AdamW does with them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from bench.modular.groups import NORM_TYPES
from bench.modular.masking import maskable_units
from bench.pipeline.training import make_optimizer
from bench.plugins.manager import get_plugins
from bench.protocol.method import TrainContext
from bench.protocol.recipe import Recipe

ADAMW = Recipe(epochs=1, optimizer="adamw", lr=1e-3, weight_decay=0.05)


def _groups_of_training(method_name: str, model_name: str, **hparams: object) -> tuple[nn.Module, list[dict]]:
    """The model a masked method trains (with ``hparams`` replaced) and the parameter groups its ``train`` passes
    to ``fit``."""
    plugins = get_plugins()
    method, spec = plugins.methods.get(method_name), plugins.models.get(model_name)
    seen: list[list[dict]] = []

    def fit(model: nn.Module, loss_fn: object, groups: list[dict]) -> list:
        seen.append(groups)
        return []

    def new_model() -> nn.Module:
        return spec.build(10, width=0.25, **({"depth": 2} if spec.family == "vit" else {}))

    ctx = TrainContext(spec, {}, None, torch.device("cpu"), ADAMW, replace(method.hparams(spec), **hparams), 0, fit=fit,
                       task_loss=None, new_model=new_model)
    ctx.model = method.build(ctx)
    method.train(ctx)
    return ctx.model, seen[0]


def _undecayed(model: nn.Module) -> set[int]:
    generators = {id(p) for _, u in maskable_units(model) for p in u.generator.parameters()}
    norms = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()}
    biases = {id(p) for name, p in model.named_parameters() if name.endswith("bias")}
    return generators | norms | biases


@pytest.mark.parametrize(("method", "model"), [("nemo", "vit_s"), ("mwt", "simcnn")])
def test_generators_biases_and_norms_get_no_weight_decay_under_adamw(method, model):
    net, groups = _groups_of_training(method, model)
    optimizer = make_optimizer(ADAMW, groups, ADAMW.lr)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert sorted(decay) == sorted(id(p) for p in net.parameters())  # each parameter in one group
    undecayed = _undecayed(net)
    assert all(decay[i] == 0.0 for i in undecayed)
    assert all(decay[id(p)] == 0.05 for p in net.parameters() if id(p) not in undecayed)
    assert any(decay[id(p)] == 0.05 for p in net.parameters())


def test_an_adamw_step_without_gradient_leaves_generators_alone_and_shrinks_weights():
    net, groups = _groups_of_training("nemo", "vit_s")
    optimizer = make_optimizer(ADAMW, groups, ADAMW.lr)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # with zero gradients AdamW moves a parameter by its weight decay alone
    after = dict(net.named_parameters())
    generator = [n for n in before if ".generator." in n]
    assert generator and all(after[n].equal(before[n]) for n in generator)
    assert all(after[n].equal(before[n]) for n in before if n.endswith("bias") or ".norm" in n)
    weight = "blocks.1.mlp.fc1.weight"
    assert torch.allclose(after[weight], before[weight] * (1 - ADAMW.lr * ADAMW.weight_decay))


@pytest.mark.parametrize(("method", "model", "mask_lr"), [("nemo", "vit_s", None), ("nemo", "vit_s", 0.03),
                                                         ("mwt", "simcnn", 0.2)])
def test_generators_train_at_the_mask_lr(method, model, mask_lr):
    plugins = get_plugins()
    assert plugins.methods.get(method).hparams(plugins.models.get(model)).mask_lr is None  # by default the model's
    # lr, as the authors' lr_mask = lr_model
    net, groups = _groups_of_training(method, model, mask_lr=mask_lr)
    generator_ids = {id(p) for _, u in maskable_units(net) for p in u.generator.parameters()}
    (group,) = [g for g in groups if {id(p) for p in g["params"]} == generator_ids]
    assert group["lr"] == (mask_lr or ADAMW.lr)
    assert all(g.get("lr", ADAMW.lr) == ADAMW.lr for g in groups if g is not group)  # the model's weights: its lr
