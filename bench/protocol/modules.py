"""What modularization produces: per-class unit activity counts and per-class module masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class ActivityStats:
    """Per-class activity counts of every maskable unit, and a capped sample of per-sample activity."""

    layers: list[str]
    sizes: list[int]
    counts: torch.Tensor  # (classes, units) int64: samples of the class where the unit was active
    class_totals: torch.Tensor  # (classes,) int64
    samples: torch.Tensor  # (kept samples, units) bool
    sample_labels: torch.Tensor  # (kept samples,) int64

    def frequencies(self) -> torch.Tensor:
        """(classes, units) float64: the share of each class's samples in which each unit was active."""
        return self.counts.double() / self.class_totals.clamp(min=1)[:, None].double()


@dataclass
class ModuleSet:
    """Per-class binary module masks over the maskable units of a model.

    ``masks[c]`` is the module of class ``c``: a bool vector over all units, the layers' units
    concatenated in ``layers`` order with ``sizes``. ``unit`` says what a unit is ('kernel',
    'neuron'); ``metrics`` holds method-specific numbers the runner records with the
    modularization metrics (e.g. a search's candidates evaluated per second); ``frequencies``,
    when a method keeps them, is how often each unit was active for each class (what rounding
    a module's layers up to a channel multiple picks the next units by); ``tensors`` holds what else
    a method's ``compose`` needs from its modularization (GradSplitter's per-class heads).
    """

    unit: str
    layers: list[str]
    sizes: list[int]
    masks: torch.Tensor  # (classes, units) bool
    metrics: dict[str, float] = field(default_factory=dict)
    frequencies: torch.Tensor | None = None  # (classes, units) float
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

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
                "metrics": dict(self.metrics), "frequencies": self.frequencies, "tensors": dict(self.tensors)}

    @classmethod
    def from_state(cls, state: dict) -> ModuleSet:
        """Inverse of ``to_state``; masks and frequencies on the CPU, wherever the state was loaded."""
        frequencies = state.get("frequencies")
        tensors = {name: t.cpu() for name, t in state.get("tensors", {}).items()}
        return cls(state["unit"], list(state["layers"]), list(state["sizes"]), state["masks"].cpu(),
                   dict(state.get("metrics", {})), None if frequencies is None else frequencies.cpu(), tensors)

    def misfit(self, units: Sequence[tuple[str, int]], num_classes: int) -> str | None:
        """What keeps these masks from covering ``units`` (a model's maskable units as (name, size), in order)
        for ``num_classes`` classes, naming the layer; None when they fit."""
        names = [name for name, _ in units]
        if not isinstance(self.masks, torch.Tensor) or self.masks.dtype != torch.bool or self.masks.dim() != 2:
            return f"masks must be a bool tensor (classes, units), got {_described(self.masks)}"
        if len(self.layers) != len(self.sizes):
            return f"{len(self.layers)} layers but {len(self.sizes)} sizes"
        for layer, size, (name, expected) in zip(self.layers, self.sizes, units, strict=False):
            if layer != name:
                where = "is not" if layer not in names else "is out of order among"
                return f"layer {layer!r} {where} the model's maskable units (expected {name!r} there)"
            if size != expected:
                return f"layer {layer!r} has {expected} units in the model, the masks give it {size}"
        if len(self.layers) < len(units):
            return f"no masks for layer {names[len(self.layers)]!r}"
        if len(self.layers) > len(units):
            return f"layer {self.layers[len(units)]!r} is not one of the model's maskable units"
        expected_shape = (num_classes, sum(self.sizes))
        for what, tensor in (("masks", self.masks), ("frequencies", self.frequencies)):
            if tensor is not None and tuple(tensor.shape) != expected_shape:
                return f"{what} are {tuple(tensor.shape)}, expected (classes, units) = {expected_shape}"
        return None

    @classmethod
    def whole(cls, stats: ActivityStats, num_classes: int, family: str) -> ModuleSet:
        """Every class's module is the whole model (the standard method's modularization)."""
        masks = torch.ones(num_classes, sum(stats.sizes), dtype=torch.bool)
        return cls(unit_kind(family), stats.layers, stats.sizes, masks)


def _described(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


def unit_kind(family: str) -> str:
    """What a maskable unit is in a model family: 'kernel' (CNNs) or 'neuron' (ViTs)."""
    return "kernel" if family == "cnn" else "neuron"
