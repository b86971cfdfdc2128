"""Per-class modules from per-sample unit activity: the threshold rule and target composition.

One streaming pass over the training data (``collect_activity``) accumulates, per class, how
often each maskable unit is active, plus a capped sample of per-sample activity for cohesion; the
memory it needs does not grow with the data set. ``threshold_masks`` turns the counts into
module masks (``threshold_modules`` also counts the layers that needed the empty-layer rule;
``floored_modules`` is MODA's rule, a floor instead of a lowered threshold);
``ModuleSet.target`` ORs the class modules of a sub-task.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

import torch
from torch import nn

from bench.errors import BenchError, UsageError
from bench.modular.masking import maskable_units
from bench.modular.signals import UnitRecorder
from bench.protocol.modules import ActivityStats

THRESHOLD_STEP = 0.05
EMPTY_LAYER_RULES = ("most_frequent", "error", "random5", "whole")
RANDOM_SHARE = 0.05  # NeMo's CNN rule: int(5% of the layer) units at random


@torch.no_grad()
def collect_activity(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    per_class: int = 256,
    on_batch: Callable[[], None] | None = None,
) -> ActivityStats:
    """Run ``model`` (eval mode) over ``batches`` and count, per class, each unit's activity.

    A unit is active for a sample when its mask is > 0 (modular model) or its signal is positive
    (standard model: ``bench.modular.signals``). The first ``per_class`` samples of every class are kept
    whole for cohesion, in a buffer allocated once: memory does not grow with the data set.
    """
    named = maskable_units(model)
    sizes = [u.num_units for _, u in named]
    counts = torch.zeros(num_classes, sum(sizes), dtype=torch.int64)
    totals = torch.zeros(num_classes, dtype=torch.int64)
    kept = torch.zeros(num_classes, per_class, sum(sizes), dtype=torch.bool)  # allocated once, filled in order
    was_training = model.training
    model.eval()
    try:
        with UnitRecorder(named, read="activity") as recorder:
            for x, y in batches:
                model(x)
                active = torch.cat(recorder.last(), dim=1).cpu()  # (batch, units) bool
                y = y.cpu()
                counts.index_add_(0, y, active.long())
                slot = totals[y] + _rank_within_class(y, num_classes)  # each sample's place among its class
                take = slot < per_class
                kept[y[take], slot[take]] = active[take]
                totals += torch.bincount(y, minlength=num_classes)
                if on_batch is not None:
                    on_batch()
    finally:
        model.train(was_training)
    filled = totals.clamp(max=per_class).tolist()
    samples = torch.cat([kept[c, :n] for c, n in enumerate(filled)])
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(filled)])
    return ActivityStats([n for n, _ in named], sizes, counts, totals, samples, labels)


def _rank_within_class(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """For each sample, how many earlier samples of the batch share its class."""
    onehot = torch.nn.functional.one_hot(y, num_classes)  # (batch, classes)
    return ((onehot.cumsum(0) - onehot) * onehot).sum(1)


class EmptyModuleLayer(BenchError):
    """A class module would keep no unit of a layer and the empty-layer rule is 'error' (MwT's)."""

    exit_code = 1


class Thresholded(NamedTuple):
    """Module masks and, per layer, how many classes' modules needed the empty-layer rule."""

    masks: torch.Tensor  # (classes, units) bool
    fallbacks: list[int]  # one count per layer, in ``ActivityStats.layers`` order


def check_empty_layer(rule: str) -> None:
    """UsageError unless ``rule`` is one of ``EMPTY_LAYER_RULES``."""
    if rule not in EMPTY_LAYER_RULES:
        raise UsageError(f"bad value for empty_layer: '{rule}' (choose {', '.join(EMPTY_LAYER_RULES)})")


def threshold_modules(stats: ActivityStats, threshold: float, empty_layer: str = "most_frequent",
                      seed: int = 0) -> Thresholded:
    """Module masks (classes, units): per layer keep units active in >= ``threshold`` of a class's samples.

    When no unit of a layer reaches the threshold it is lowered by 0.05 until one does. A layer no
    unit of which reaches 0.05 gets the ``empty_layer`` rule: 'most_frequent' keeps its most
    frequent unit (modbench's), 'error' raises ``EmptyModuleLayer`` (MwT's), 'random5' keeps a
    random 5% of its units, at least one, drawn from a generator seeded with ``seed`` (NeMo's CNN
    rule), 'whole' keeps every unit (what NeMo's ViT code does). ``fallbacks`` counts, per layer,
    the classes whose module needed the rule.
    """
    check_empty_layer(empty_layer)
    freq = stats.frequencies()
    masks = torch.zeros_like(freq, dtype=torch.bool)
    generator = torch.Generator().manual_seed(seed)
    fallbacks = []
    start = 0
    for name, size in zip(stats.layers, stats.sizes, strict=True):
        fired = 0
        for c in range(freq.shape[0]):
            keep = _keep_layer(freq[c, start:start + size], threshold)
            if keep is None:
                fired += 1
                keep = _empty_layer_rule(freq[c, start:start + size], empty_layer, generator, (name, c))
            masks[c, start:start + size] = keep
        fallbacks.append(fired)
        start += size
    return Thresholded(masks, fallbacks)


def threshold_masks(stats: ActivityStats, threshold: float, empty_layer: str = "most_frequent",
                    seed: int = 0) -> torch.Tensor:
    """The (classes, units) bool module masks of ``threshold_modules``."""
    return threshold_modules(stats, threshold, empty_layer, seed).masks


def floored_modules(stats: ActivityStats, threshold: float, floor: float,
                    layers: Collection[str] | None = None) -> Thresholded:
    """MODA's module masks (classes, units): per layer the units active in >= ``threshold`` of a class's
    samples, with a floor.

    A class keeping fewer than ``max(1, int(floor * layer size))`` units of a layer keeps instead its
    ``k`` most frequent ones (ties: the lower index), ``k`` being the larger of that minimum and the
    most units any class keeps of the layer at the threshold (MODA ``model_modularizer.py``). Layers
    not in ``layers`` (None: all) stay whole. ``fallbacks`` counts, per layer, the classes topped up.
    """
    freq = stats.frequencies()
    masks = torch.ones_like(freq, dtype=torch.bool)
    fallbacks = []
    start = 0
    for name, size in zip(stats.layers, stats.sizes, strict=True):
        rates = freq[:, start:start + size]  # (classes, size)
        if layers is None or name in layers:
            keep = rates >= threshold
            least = max(1, int(floor * size))
            short = keep.sum(1) < least
            k = max(least, int(keep.sum(1).max()))
            top = torch.sort(rates, dim=1, descending=True, stable=True).indices[:, :k]  # (classes, k)
            keep[short] = torch.zeros_like(keep[short]).scatter_(1, top[short], True)
            masks[:, start:start + size] = keep
            fallbacks.append(int(short.sum()))
        else:
            fallbacks.append(0)
        start += size
    return Thresholded(masks, fallbacks)


def _keep_layer(freq: torch.Tensor, threshold: float) -> torch.Tensor | None:
    """The units at the highest level (threshold, then down by 0.05) that keeps any; None if none above 0."""
    steps = 0
    while True:
        level = round(threshold - steps * THRESHOLD_STEP, 10)
        if level <= 0:
            return None
        keep = freq >= level
        if keep.any():
            return keep
        steps += 1


def _empty_layer_rule(freq: torch.Tensor, rule: str, generator: torch.Generator,
                      where: tuple[str, int]) -> torch.Tensor:
    """What layer ``where[0]`` keeps in class ``where[1]``'s module when no unit reaches any threshold level."""
    if rule == "error":
        raise EmptyModuleLayer(f"class {where[1]}'s module would keep no unit of layer '{where[0]}': none is active "
                               "in 5% of the class's samples (empty_layer='error', MwT's rule; most_frequent, "
                               "random5 or whole keep some)")
    keep = torch.zeros_like(freq, dtype=torch.bool)
    if rule == "whole":
        keep[:] = True
    elif rule == "random5":
        keep[torch.randperm(len(freq), generator=generator)[:max(1, int(RANDOM_SHARE * len(freq)))]] = True
    else:
        keep[int(freq.argmax())] = True
    return keep
