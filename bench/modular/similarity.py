"""Per-layer cosine similarities between the samples' masks, computed a few layers at a time.

The mask losses of MwT and NeMo need, for every masked layer, the (batch, batch) matrix of cosine
similarities between the samples' masks. Layers of equal width are stacked and multiplied in one
batched product, so a ViT-S with 66 masked layers costs two products instead of 66 small ones
(on a GPU the per-layer version is bound by kernel launches, not arithmetic). The masks of one
forward pass come as a ``MaskList``, which stacks itself once for the loss and the logged unit rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.modular.autocast import without_autocast


class MaskList(list):
    """The masks of one forward pass, (batch, units) each, that stack themselves by width once.

    A snapshot: ``stacks()`` is computed at its first call and kept, so do not change the list after.
    """

    _stacks: list[torch.Tensor] | None = None

    def stacks(self) -> list[torch.Tensor]:
        """``stack_by_width`` of the masks, computed once."""
        if self._stacks is None:
            self._stacks = _stacked(self)
        return self._stacks


def _stacked(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    groups: dict[int, list[torch.Tensor]] = {}
    for mask in masks:
        groups.setdefault(mask.shape[1], []).append(mask)
    return [torch.stack(group).float() for group in groups.values()]


def stack_by_width(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """The (batch, units) masks grouped by width: one float (layers, batch, units) tensor per width."""
    return masks.stacks() if isinstance(masks, MaskList) else _stacked(masks)


def mask_similarities(masks: list[torch.Tensor]) -> torch.Tensor:
    """(layers, batch, batch) float32 cosine similarities of the L2-normalised masks, one matrix per layer.

    Layers come out grouped by width (the order of first appearance of each width); the losses
    average over layers, so the order does not matter. Computed in float32 with autocast off.
    """
    stacks = stack_by_width(masks)
    with without_autocast(stacks[0].device.type):
        sims = []
        for stack in stacks:
            z = F.normalize(stack, p=2, dim=2)
            sims.append(z @ z.transpose(1, 2))
        return torch.cat(sims)


def unit_rate(masks: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the fraction of units whose mask is positive (a scalar tensor)."""
    with torch.no_grad():
        stacks = stack_by_width(masks)
        return torch.cat([(stack > 0).float().mean(dim=(1, 2)) for stack in stacks]).mean()
