"""Mask generators: units that read the same input share one computation, with unchanged results."""

import copy

import pytest
import torch

from bench.models.cnn import resnet18
from bench.models.vit import vit_s
from bench.modular.masking import attach_generators, current_masks, maskable_units

BUILDS = {"vit_s": lambda: vit_s(10, width=0.25, depth=3), "resnet18": lambda: resnet18(10, width=0.125)}


def ungrouped(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose generators each compute their own mask."""
    model = copy.deepcopy(model)
    for _, unit in maskable_units(model):
        unit.generator.shared = None
    return model


def step(model: torch.nn.Module) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Masks and generator gradients of one forward and backward pass on fixed images."""
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = model(x)
    masks = current_masks(model)
    (out.pow(2).mean() + sum(m.sum() for m in masks)).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if ".generator." in n}
    return [m.detach() for m in masks], grads


@pytest.mark.parametrize("name", list(BUILDS))
def test_shared_input_generators_compute_what_each_would_alone(name):
    torch.manual_seed(0)
    model = attach_generators(BUILDS[name]())
    groups = {id(u.generator.shared[0]) for _, u in maskable_units(model) if u.generator.shared is not None}
    assert len(groups) == (2 if name == "vit_s" else 3)  # q/k/v of blocks 1, 2; three 1x1 shortcuts
    alone = ungrouped(model)
    assert list(model.state_dict()) == list(alone.state_dict())  # the same parameters, the same keys
    (masks, grads), (expected_masks, expected_grads) = step(model), step(alone)
    for got, expected in zip(masks, expected_masks, strict=True):
        torch.testing.assert_close(got, expected)
    for key, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[key], msg=key)


def test_groups_hold_no_tensor_after_a_pass_and_copy_with_the_model():
    torch.manual_seed(0)
    model = attach_generators(BUILDS["vit_s"]())
    model(torch.randn(2, 3, 32, 32))
    group = model.blocks[1].attn.q.generator.shared[0]
    assert group._input is None and all(m is None for m in group._masks)
    with torch.no_grad():  # the units keep their last masks, which must be leaves to be copied
        model(torch.randn(2, 3, 32, 32))
    twin = copy.deepcopy(model)
    twin_group = twin.blocks[1].attn.q.generator.shared[0]
    assert twin_group is not group and twin_group.generators[1] is twin.blocks[1].attn.k.generator
