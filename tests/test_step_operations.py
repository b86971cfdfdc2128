"""Operations a training step launches (``tests/benchmarks/steps.py``): counts are deterministic, so asserted here.

The figures against the standard step, on full-size models, are printed by the benchmark
``tests/benchmarks/test_op_count.py``.
"""

from __future__ import annotations

import pytest
import torch
from benchmarks.steps import count_ops, step_ops

from bench.modular.similarity import MaskList, cohesion_coupling_loss, unit_rate
from methods.nemo import contrastive_mask_loss

LOSSES = {
    "mwt": lambda masks, labels: sum(cohesion_coupling_loss(masks, labels)),
    "nemo": lambda masks, labels: contrastive_mask_loss(masks, labels, 0.2),
}


def _loss_ops(loss, widths: list[int]) -> int:
    """Operations of the loss on masks of ``widths``, its gradient to the masks and the logged unit rate
    (after a first pass, as every step but the first: the padded layout is on the device by then)."""
    torch.manual_seed(0)
    leaves = [torch.rand(8, w, requires_grad=True) for w in widths]
    labels = torch.arange(8) % 3

    def run() -> None:
        masks = MaskList(leaves)  # a forward pass's masks, stacked once for the loss and the rate
        torch.autograd.grad(loss(masks, labels), leaves)
        unit_rate(masks)

    run()
    return sum(count_ops(run).values())


@pytest.mark.parametrize("method", list(LOSSES))
def test_mask_losses_launch_as_many_operations_for_many_layers_of_mixed_widths_as_for_one(method):
    one_layer = _loss_ops(LOSSES[method], [16])
    assert _loss_ops(LOSSES[method], [16, 64, 8, 16, 32, 64, 64]) == one_layer


def test_a_masked_step_adds_its_generators_and_one_loss():
    """On a ViT with one masked block (6 masked units: q/k/v share one generator pass), the masked step adds
    at most 20 operations per masked unit (a generator's forward and backward, the mask product, the
    gradient joins) and 80 for the loss, the unit rate and the generators' optimizer group."""
    model = "vit_s:depth=2,width=0.125"
    standard = sum(step_ops("standard", model, batch=4).values())
    for method in ("mwt", "nemo"):
        masked = sum(step_ops(method, model, batch=4).values())
        assert standard < masked <= standard + 6 * 20 + 80
