"""Controls of a reused module: as many units per layer, chosen at random or by weight magnitude.

A control answers a sceptic's first question: would any units of the same size do as well? For a
task's module it keeps, in every layer, exactly as many units as the module keeps, chosen from the
same trained model another way: uniformly at random (seeded), or by the L1 norm of each unit's
weights (the classic pruning baseline, Li et al., ICLR 2017: a conv kernel's |w| summed over its
input channels and window, a neuron's over its inputs; ties go to the lower index). The control is
a ``ModuleSet`` the method composes exactly like its own: for a method that composes one module per
class (``per_class``), each target class's module gets a control of its own per-layer counts; for
the others every target class gets the control of the task's module (the union of its classes).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from bench.models.layers import ConvUnit, units
from bench.modular.rounding import task_keep
from bench.protocol.modules import ModuleSet
from bench.record import CONTROL_KINDS

__all__ = ["CONTROL_KINDS", "control_modules", "magnitude_like", "matched_masks", "random_like", "unit_l1"]


def random_like(keep: torch.Tensor, sizes: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """A (units,) mask keeping, in each layer of ``sizes`` (concatenated), as many units as ``keep``, drawn
    uniformly without replacement from ``generator``."""
    parts = []
    for part in torch.split(keep, list(sizes)):
        chosen = torch.zeros_like(part)
        chosen[torch.randperm(len(part), generator=generator)[:int(part.sum())]] = True
        parts.append(chosen)
    return torch.cat(parts)


def magnitude_like(keep: torch.Tensor, scores: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """A (units,) mask keeping, in each layer, as many units as ``keep``: those of the highest ``scores``
    (ties: the lower index)."""
    parts = []
    for part, score in zip(torch.split(keep, list(sizes)), torch.split(scores, list(sizes)), strict=True):
        chosen = torch.zeros_like(part)
        chosen[torch.sort(-score, stable=True).indices[:int(part.sum())]] = True
        parts.append(chosen)
    return torch.cat(parts)


def unit_l1(model: nn.Module, layers: Sequence[str]) -> torch.Tensor:
    """(units,) float64: the L1 norm of each unit's weights, the ``layers`` (unit names) concatenated."""
    named = dict(units(model))
    norms = []
    for name in layers:
        unit = named[name]
        weight = unit.conv.weight if isinstance(unit, ConvUnit) else unit.weight  # (units, ...)
        norms.append(weight.detach().double().abs().flatten(1).sum(dim=1).cpu())
    return torch.cat(norms)


def task_seed(seed: int, classes: Sequence[int]) -> int:
    """The random control's seed for one task of a cell: the cell's seed and the task's classes, hashed."""
    return zlib.crc32(f"{seed}:{','.join(map(str, classes))}".encode())


def matched_masks(modules: ModuleSet, classes: Sequence[int], per_class: bool,
                  multiple: int = 1) -> dict[int, torch.Tensor]:
    """Per target class, the (units,) mask its control matches layer by layer: its own module (``per_class``)
    or the task's module as composed (its classes' union, rounded to ``multiple``: the same for every class)."""
    if per_class:
        return {c: modules.masks[c] for c in classes}
    task = task_keep(modules, classes, multiple)
    return {c: task for c in classes}


def control_modules(modules: ModuleSet, kept: dict[int, torch.Tensor], kind: str, model: nn.Module,
                    seed: int) -> ModuleSet:
    """``modules`` with the masks of the classes in ``kept`` (``matched_masks``) replaced by their controls
    of ``kind``, drawn from ``model``'s units; the random draw is seeded by ``seed`` and the classes.

    Equal masks get the same control, so the union of a task's classes is the task's control.
    """
    if kind not in CONTROL_KINDS:
        raise ValueError(f"unknown control {kind!r}; choose one of {', '.join(CONTROL_KINDS)}")
    generator = torch.Generator().manual_seed(task_seed(seed, sorted(kept)))
    scores = unit_l1(model, modules.layers) if kind == "magnitude" else None
    masks = modules.masks.clone()
    drawn: list[tuple[torch.Tensor, torch.Tensor]] = []  # (matched mask, its control), each drawn once
    for c in sorted(kept):
        control = next((done for mask, done in drawn if torch.equal(mask, kept[c])), None)
        if control is None:
            control = (random_like(kept[c], modules.sizes, generator) if scores is None
                       else magnitude_like(kept[c], scores, modules.sizes))
            drawn.append((kept[c], control))
        masks[c] = control
    return replace(modules, masks=masks)
