"""Per-class modules from per-sample unit activity: the threshold rule and target composition.

One streaming pass over the training data (``collect_activity``) accumulates, per class, how
often each maskable unit is active, plus a capped sample of per-sample activity for cohesion; the
memory it needs does not grow with the data set. ``threshold_masks`` turns the counts into
module masks; ``ModuleSet.target`` ORs the class modules of a sub-task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bench.masking import maskable_units

THRESHOLD_STEP = 0.05


@dataclass
class ActivityStats:
    """Per-class activity counts of every maskable unit, and a capped sample of per-sample activity."""

    layers: list[str]
    sizes: list[int]
    counts: torch.Tensor  # (classes, units) int64: samples of the class where the unit was active
    class_totals: torch.Tensor  # (classes,) int64
    samples: torch.Tensor  # (kept samples, units) bool
    sample_labels: torch.Tensor  # (kept samples,) int64


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


@dataclass
class ModuleSet:
    """Per-class binary module masks over the maskable units of a model.

    ``masks[c]`` is the module of class ``c``: a bool vector over all units, the layers' units
    concatenated in ``layers`` order with ``sizes``. ``unit`` says what a unit is ('kernel',
    'neuron'); ``extra`` holds whatever else a method needs to rebuild its modules (tensors or
    plain values only, so it stores and loads safely).
    """

    unit: str
    layers: list[str]
    sizes: list[int]
    masks: torch.Tensor  # (classes, units) bool
    extra: dict | None = None

    def split(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """A (units,) vector cut into one tensor per layer name."""
        return dict(zip(self.layers, torch.split(row, self.sizes), strict=True))

    def target_mask(self, classes: Sequence[int]) -> torch.Tensor:
        """The (units,) mask of the module for ``classes``: the OR of their class modules."""
        return self.masks[list(classes)].any(dim=0)

    def target(self, classes: Sequence[int]) -> dict[str, torch.Tensor]:
        """Per-layer keep masks of the target module for ``classes``."""
        return self.split(self.target_mask(classes))

    def to_state(self) -> dict:
        """A dict of tensors and plain values (safe for ``torch.load(weights_only=True)``)."""
        return {"unit": self.unit, "layers": self.layers, "sizes": self.sizes, "masks": self.masks,
                "extra": self.extra or {}}

    @classmethod
    def from_state(cls, state: dict) -> ModuleSet:
        """Inverse of ``to_state``."""
        return cls(state["unit"], list(state["layers"]), list(state["sizes"]), state["masks"], state["extra"])

    @classmethod
    def whole(cls, stats: ActivityStats, num_classes: int, unit: str) -> ModuleSet:
        """Every class's module is the whole model (the standard method's modularization)."""
        masks = torch.ones(num_classes, sum(stats.sizes), dtype=torch.bool)
        return cls(unit, stats.layers, stats.sizes, masks)
