"""Controls of a reused module: as many units per layer, chosen at random or by weight magnitude.

A control answers a sceptic's first question: would any units of the same size do as well? For a
task's module it keeps, in every layer, exactly as many units as the module keeps, chosen from the
same trained model another way: uniformly at random (seeded), or by the L1 norm of each unit's
weights (the classic pruning baseline, Li et al., ICLR 2017: a conv kernel's |w| summed over its
input channels and window, a neuron's over its inputs; ties go to the lower index). The control is
a ``ModuleSet`` the method composes exactly like its own: for a method that composes one module per
class (``per_class``), each target class's module gets a control of its own per-layer counts; for
the others every target class gets the control of the task's module (the union of its classes).
In a ViT's attention a module computes only the dims its queries and keys both keep; a control's keys
are drawn so that as many pair with its queries (``paired_keys``).
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

__all__ = ["CONTROL_KINDS", "choose", "control_modules", "magnitude_like", "matched_masks", "paired_keys",
           "random_like", "unit_l1"]


def choose(candidates: torch.Tensor, count: int, scores: torch.Tensor | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """A bool mask of ``count`` units among the ``candidates`` (a bool mask of one layer): those of the highest
    ``scores`` (ties: the lower index), or, without scores, drawn uniformly from ``generator``."""
    pool = candidates.nonzero().flatten()
    if scores is None:
        order = pool[torch.randperm(len(pool), generator=generator)]
    else:
        order = pool[torch.sort(-scores[pool], stable=True).indices]
    chosen = torch.zeros_like(candidates)
    chosen[order[:count]] = True
    return chosen


def random_like(keep: torch.Tensor, sizes: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """A (units,) mask keeping, in each layer of ``sizes`` (concatenated), as many units as ``keep``, drawn
    uniformly without replacement from ``generator``."""
    return torch.cat([choose(torch.ones_like(part), int(part.sum()), generator=generator)
                      for part in torch.split(keep, list(sizes))])


def magnitude_like(keep: torch.Tensor, scores: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """A (units,) mask keeping, in each layer, as many units as ``keep``: those of the highest ``scores``
    (ties: the lower index)."""
    return torch.cat([choose(torch.ones_like(part), int(part.sum()), score)
                      for part, score in zip(torch.split(keep, list(sizes)), torch.split(scores, list(sizes)),
                                             strict=True)])


def paired_keys(control: torch.Tensor, keep: torch.Tensor, layers: Sequence[str], sizes: Sequence[int],
                scores: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``control`` with each attention's key dims redrawn so that as many of them pair with a kept query dim
    as in ``keep``: a ViT module computes only the dims its q and k both keep, so a control matching q and
    k apart would compute fewer. Keys are drawn among the control's kept query dims, then among the others."""
    starts = dict(zip(layers, torch.tensor([0, *sizes]).cumsum(0).tolist(), strict=False))
    control = control.clone()
    for name in layers:
        if not name.endswith("attn.q") or name[:-1] + "k" not in starts:
            continue
        q, k = (slice(starts[n], starts[n] + sizes[layers.index(n)]) for n in (name, name[:-1] + "k"))
        both, keys = int((keep[q] & keep[k]).sum()), int(keep[k].sum())
        key_scores = None if scores is None else scores[k]
        control[k] = (choose(control[q], both, key_scores, generator)
                      | choose(~control[q], keys - both, key_scores, generator))
    return control


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
            control = paired_keys(control, kept[c], modules.layers, modules.sizes, scores, generator)
            drawn.append((kept[c], control))
        masks[c] = control
    return replace(modules, masks=masks)
