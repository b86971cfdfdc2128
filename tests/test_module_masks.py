"""Soft module masks (``module_masks=soft``): a CNN module keeps its units' generators, sliced to the module.

It computes what the modular model computes with every dropped unit's mask forced to 0; with every
unit kept, what the modular model itself computes. Hard masks (the default) compute what the model
with fixed 0/1 masks computes (``test_extract.py``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_extract import CNNS, TOL, images, modular, random_keep
from torch import nn

from bench.errors import UsageError
from bench.models.layers import units
from bench.modular.extract import extract
from bench.modular.head import attach_head
from bench.modular.masking import MaskGenerator, maskable_units
from methods.mwt import MwTHparams


class ForcedMask(nn.Module):
    """A generator whose mask is multiplied by a fixed 0/1 ``keep`` (dropped units forced to 0)."""

    def __init__(self, generator: nn.Module, keep: torch.Tensor) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("keep", keep.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x) * self.keep


def forced(model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the modular ``model`` whose dropped units' masks are 0, its kept units' masks as trained."""
    reference = copy.deepcopy(model)
    named = dict(units(reference))
    for name, mask in keep.items():
        named[name].generator = ForcedMask(named[name].generator, mask)
    return reference.eval()


@pytest.mark.parametrize("name", ["simcnn", "rescnn", "resnet18", "mobilenetv2"])
def test_a_soft_module_computes_the_modular_model_with_dropped_units_off(name):
    model = modular(CNNS[name])
    keep = random_keep(model, seed=2)
    soft = extract(model, keep, soft_masks=True).eval()
    hard = extract(model, keep).eval()
    x = images()
    with torch.no_grad():
        expected = forced(model, keep)(x)
        assert (soft(x) - expected).abs().max() < TOL
        assert (hard(x) - expected).abs().max() > 10 * TOL  # hard masks pass kept units unscaled
    soft_units = dict(units(soft))
    assert all(isinstance(soft_units[n].generator, MaskGenerator) for n in keep)
    assert all(u.generator.shared is None for n, u in soft_units.items() if n in keep)
    sizes = {n: (u.generator.fc1.in_features, u.generator.fc2.out_features) for n, u in soft_units.items()
             if n in keep}
    assert all(out == int(keep[n].sum()) for n, (_, out) in sizes.items())


def test_a_soft_module_keeping_every_unit_is_the_modular_model():
    model = modular(CNNS["resnet18"])
    keep = {n: torch.ones(u.num_units, dtype=torch.bool) for n, u in maskable_units(model)}
    soft = extract(model, keep, soft_masks=True).eval()
    with torch.no_grad():
        assert (soft(images()) - model(images())).abs().max() < TOL


def test_a_soft_module_fine_tunes_its_generators_and_exports():
    model = modular(CNNS["simcnn"])
    module = attach_head(extract(model, random_keep(model), soft_masks=True), 10, 2)
    module.train()(images()).pow(2).sum().backward()
    generators = [u.generator for _, u in units(module) if u.generator is not None]
    assert generators and all(p.grad is not None for g in generators for p in g.parameters())
    module.eval()
    program = torch.export.export(module, (images(),))
    with torch.no_grad():
        assert (program.module()(images()) - module(images())).abs().max() < 1e-5


def test_soft_masks_are_refused_on_a_vit_and_a_bad_value_is_one_line():
    from bench.models.vit import vit_s

    vit = vit_s(10, width=0.25, depth=2)
    with pytest.raises(ValueError, match="CNN modules"):
        extract(vit, {}, soft_masks=True)
    with pytest.raises(UsageError, match="module_masks: 'fuzzy' \\(choose hard or soft\\)"):
        MwTHparams(module_masks="fuzzy")
