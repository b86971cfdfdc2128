"""Per-layer cosine similarities between the samples' masks, every layer in one pass.

The mask losses of MwT and NeMo need, for every masked layer, the (batch, batch) matrix of cosine
similarities between the samples' masks; MODA needs the same matrix of the samples' activations
(``cohesion_coupling_loss`` is MwT's loss over masks and MODA's affinity and dispersion over
activations, one formula). The masks of all layers are laid side by side in one
zero-padded (layers, batch, widest) tensor, normalised and multiplied in one batched product:
zeros add nothing to a norm or a dot product, so each layer's matrix is its own, and the loss
launches the same few operations whatever the number and widths of the masked layers (on a GPU a
loss computed a layer or a width at a time is bound by kernel launches, not arithmetic). The
masks of one forward pass come as a ``MaskList``, which stacks itself once for the loss and the
logged unit rate.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from bench.modular.autocast import without_autocast


class MaskList(list):
    """The masks of one forward pass, (batch, units) each, that stack themselves once.

    A snapshot: ``stacked()`` is computed at its first call and kept, so do not change the list after.
    """

    _stacked: torch.Tensor | None = None

    def stacked(self) -> torch.Tensor:
        """``stack_masks`` of the masks, computed once."""
        if self._stacked is None:
            self._stacked = _stack(self)
        return self._stacked


@functools.lru_cache(maxsize=16)
def _layout(widths: tuple[int, ...], batch: int, device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """On ``device``, once per layout (no copy to the device at each step): where the (units, batch)
    masks go in the (layers, batch, widest) stack, as ``index_put`` indices, and the (layers, 1) widths."""
    layer = torch.cat([torch.full((w,), i) for i, w in enumerate(widths)])  # (units,) each unit's layer
    column = torch.cat([torch.arange(w) for w in widths])  # (units,) its place within its layer
    index = (layer[:, None], torch.arange(batch)[None, :], column[:, None])  # broadcast to (units, batch)
    return tuple(i.to(device) for i in index), torch.tensor(widths, dtype=torch.float32)[:, None].to(device)


def _widths(masks: list[torch.Tensor]) -> tuple[int, ...]:
    return tuple(m.shape[1] for m in masks)


def _stack(masks: list[torch.Tensor]) -> torch.Tensor:
    widths = _widths(masks)
    flat = torch.cat(masks, dim=1).float()  # (batch, units of all layers)
    index, _ = _layout(widths, len(flat), flat.device)
    return flat.new_zeros(len(widths), len(flat), max(widths)).index_put(index, flat.T)  # (layers, batch, widest)


def stack_masks(masks: list[torch.Tensor]) -> torch.Tensor:
    """The (batch, units) masks as one float (layers, batch, widest) tensor, zero beyond each layer's width."""
    return masks.stacked() if isinstance(masks, MaskList) else _stack(masks)


def mask_similarities(masks: list[torch.Tensor]) -> torch.Tensor:
    """(layers, batch, batch) float32 cosine similarities of the L2-normalised masks, one matrix per layer.

    In the order of ``masks``; computed in float32 with autocast off, in one batched product.
    """
    stack = stack_masks(masks)
    with without_autocast(stack.device.type):
        z = F.normalize(stack, p=2, dim=2)  # (layers, batch, widest)
        return torch.bmm(z, z.transpose(1, 2))


def unit_rate(masks: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the fraction of units whose mask is positive (a scalar tensor)."""
    with torch.no_grad():
        stack = stack_masks(masks)  # padding is 0, never positive: divide by the real widths
        _, widths = _layout(_widths(masks), stack.shape[1], stack.device)
        return ((stack > 0).sum(dim=2) / widths).mean()  # mean over (layers, batch) of open fractions


def pair_weights(labels: torch.Tensor) -> torch.Tensor:
    """(2, batch, batch): same-class pairs i < j, then different-class pairs i < j, each divided by
    its count (at least 1), so that a product with a similarity matrix is the mean over those pairs."""
    same = labels[:, None] == labels[None, :]  # (batch, batch)
    pairs = torch.stack([same, ~same]).triu(diagonal=1).float()
    return pairs / pairs.sum(dim=(1, 2), keepdim=True).clamp(min=1)


def cohesion_coupling_loss(signals: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - mean same-class similarity, mean different-class similarity), averaged over layers.

    Per layer, the (batch, units) ``signals`` (masks, or activations) are L2-normalised per sample and
    compared over the pairs i < j; a batch without a pair of one kind counts 0 similarity for it.
    MwT calls the two cohesion and coupling losses, MODA 1 - affinity and dispersion. Every layer in
    one product: the (layers, 2) mean similarities over same-class and different-class pairs.
    """
    sim = mask_similarities(signals)  # (layers, batch, batch)
    per_layer = sim.flatten(1) @ pair_weights(labels).flatten(1).T  # (layers, 2)
    same_class, other_class = per_layer.mean(dim=0)
    return 1 - same_class, other_class
