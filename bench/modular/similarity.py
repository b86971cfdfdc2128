"""Per-layer cosine similarities between the samples' masks, computed a few layers at a time.

The mask losses of MwT and NeMo need, for every masked layer, the (batch, batch) matrix of cosine
similarities between the samples' masks. Layers of equal width are stacked and multiplied in one
batched product, so a ViT-S with 66 masked layers costs two products instead of 66 small ones
(on a GPU the per-layer version is bound by kernel launches, not arithmetic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stack_by_width(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """The (batch, units) masks grouped by width: one (layers, batch, units) tensor per width."""
    groups: dict[int, list[torch.Tensor]] = {}
    for mask in masks:
        groups.setdefault(mask.shape[1], []).append(mask)
    return [torch.stack(group).float() for group in groups.values()]


def mask_similarities(masks: list[torch.Tensor]) -> torch.Tensor:
    """(layers, batch, batch) cosine similarities of the L2-normalised masks, one matrix per layer.

    Layers come out grouped by width (the order of first appearance of each width); the losses
    average over layers, so the order does not matter.
    """
    sims = []
    for stack in stack_by_width(masks):
        z = F.normalize(stack, p=2, dim=2)
        sims.append(z @ z.transpose(1, 2))
    return torch.cat(sims)


def unit_rate(masks: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the fraction of units whose mask is positive (a scalar tensor)."""
    with torch.no_grad():
        return torch.cat([(stack > 0).float().mean(dim=(1, 2)) for stack in stack_by_width(masks)]).mean()
