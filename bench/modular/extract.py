"""Physical extraction: a smaller ``nn.Module`` holding only a module's retained units.

``extract(model, keep)`` copies the retained weights of ``model`` into new, smaller layers. In
'exact' mode the result computes what ``fix_masks(model, keep)`` computes (the modular model with
each generator replaced by its fixed 0/1 mask), with fewer parameters and FLOPs. CNNs are built
by ``bench.modular.extract_cnn``, ViTs by ``bench.modular.extract_vit`` (which also has the 'paper'
mode: NeMo's ViT module build); the layers they build live in ``bench.modular.layers``.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.cnn import CNN
from bench.models.layers import units
from bench.models.vit import ViT
from bench.modular.extract_cnn import extract_cnn
from bench.modular.extract_vit import extract_vit

__all__ = ["MODES", "extract"]


MODES = ("exact", "paper")


def extract(model: nn.Module, keep: dict[str, torch.Tensor], mode: str = "exact",
            soft_masks: bool = False) -> nn.Module:
    """A physically smaller copy of ``model`` holding only the retained units.

    ``keep`` maps a unit's qualified name (as in ``bench.models.layers.units``) to a bool tensor
    (num_units,) of retained outputs; a unit absent from ``keep`` is kept whole (its generator,
    if any, is dropped). ``model`` is not modified; the result has no generators (but with
    ``soft_masks``), is trainable and is in ``model``'s train/eval state. ``mode`` 'paper' (ViTs
    only) builds NeMo's module.

    ``soft_masks`` (CNNs): the units named in ``keep`` keep their mask generators, sliced to the module's
    channels, so each kept channel is scaled by its soft mask as in the MwT authors' module classes; the
    module then computes what the modular model computes with every dropped unit's mask forced to 0.
    """
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; choose one of {', '.join(MODES)}")
    masks = _checked_masks(model, keep)
    if isinstance(model, CNN):
        if mode == "paper":
            raise ValueError("mode 'paper' is NeMo's ViT module build; use mode 'exact' for a CNN")
        result = extract_cnn(model, masks, soft_masks)
    elif isinstance(model, ViT):
        if soft_masks:
            raise ValueError("soft masks are built for CNN modules (the MwT authors' module classes); "
                             "a ViT module keeps hard masks")
        result = extract_vit(model, masks, mode)
    else:
        raise TypeError(f"cannot extract a {type(model).__name__}: only the zoo's CNN and ViT are supported")
    reference = next(model.parameters())
    return result.to(device=reference.device, dtype=reference.dtype).train(model.training)


def _checked_masks(model: nn.Module, keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``keep`` as 1-D bool CPU tensors, after checking names, lengths and non-emptiness."""
    named = dict(units(model))
    masks = {}
    for name, mask in keep.items():
        if name not in named:
            raise ValueError(f"keep names {name!r}, which is not a unit of the model "
                             "(see bench.models.layers.units)")
        mask = torch.as_tensor(mask).detach().cpu()
        if mask.dim() != 1 or len(mask) != named[name].num_units:
            raise ValueError(f"keep mask for {name!r} has shape {tuple(mask.shape)}; "
                             f"expected ({named[name].num_units},)")
        mask = mask != 0
        if not mask.any():
            raise ValueError(f"keep mask for {name!r} retains no unit; a module keeps at least one per layer")
        masks[name] = mask
    return masks
