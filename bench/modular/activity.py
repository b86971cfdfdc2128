"""Per-class modules from per-sample unit activity: the threshold rule and target composition.

One streaming pass over the training data (``collect_activity``) accumulates, per class, how
often each maskable unit is active, plus a capped sample of per-sample activity for cohesion; the
memory it needs does not grow with the data set. ``threshold_masks`` turns the counts into
module masks; ``ModuleSet.target`` ORs the class modules of a sub-task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from bench.modular.masking import maskable_units
from bench.protocol.modules import ActivityStats

THRESHOLD_STEP = 0.05


@torch.no_grad()
def collect_activity(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    per_class: int = 256,
    on_batch: Callable[[], None] | None = None,
) -> ActivityStats:
    """Run ``model`` (eval mode) over ``batches`` and count, per class, each unit's activity.

    A unit is active for a sample when its mask is > 0 (modular model) or its post-ReLU output is
    positive on average (standard model). The first ``per_class`` samples of every class are kept
    whole for cohesion, in a buffer allocated once: memory does not grow with the data set.
    """
    named = maskable_units(model)
    sizes = [u.num_units for _, u in named]
    seen: list[torch.Tensor] = []
    hooks = [u.register_forward_hook(lambda mod, _inp, out: seen.append(mod.activity(out))) for _, u in named]
    counts = torch.zeros(num_classes, sum(sizes), dtype=torch.int64)
    totals = torch.zeros(num_classes, dtype=torch.int64)
    kept = torch.zeros(num_classes, per_class, sum(sizes), dtype=torch.bool)  # allocated once, filled in order
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            seen.clear()
            model(x)
            active = torch.cat(seen, dim=1).cpu()  # (batch, units) bool
            y = y.cpu()
            counts.index_add_(0, y, active.long())
            slot = totals[y] + _rank_within_class(y, num_classes)  # each sample's place among its class
            take = slot < per_class
            kept[y[take], slot[take]] = active[take]
            totals += torch.bincount(y, minlength=num_classes)
            if on_batch is not None:
                on_batch()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    filled = totals.clamp(max=per_class).tolist()
    samples = torch.cat([kept[c, :n] for c, n in enumerate(filled)])
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(filled)])
    return ActivityStats([n for n, _ in named], sizes, counts, totals, samples, labels)


def _rank_within_class(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """For each sample, how many earlier samples of the batch share its class."""
    onehot = torch.nn.functional.one_hot(y, num_classes)  # (batch, classes)
    return ((onehot.cumsum(0) - onehot) * onehot).sum(1)


def threshold_masks(stats: ActivityStats, threshold: float) -> torch.Tensor:
    """Module masks (classes, units): per layer keep units active in >= ``threshold`` of a class's samples.

    When no unit of a layer reaches the threshold it is lowered by 0.05 until one does, so a layer
    never ends up empty (a layer whose units never fire keeps its most frequent unit).
    """
    freq = stats.counts.double() / stats.class_totals.clamp(min=1)[:, None].double()  # (classes, units)
    masks = torch.zeros_like(freq, dtype=torch.bool)
    start = 0
    for size in stats.sizes:
        layer = freq[:, start:start + size]
        for c in range(layer.shape[0]):
            masks[c, start:start + size] = _keep_layer(layer[c], threshold)
        start += size
    return masks


def _keep_layer(freq: torch.Tensor, threshold: float) -> torch.Tensor:
    steps = 0
    while True:
        level = round(threshold - steps * THRESHOLD_STEP, 10)
        if level <= 0:
            keep = torch.zeros_like(freq, dtype=torch.bool)
            keep[int(freq.argmax())] = True
            return keep
        keep = freq >= level
        if keep.any():
            return keep
        steps += 1
