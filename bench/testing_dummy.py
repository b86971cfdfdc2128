"""``DummyMethod``, the smallest complete method, for method authors' tests (``bench.testing`` hands it out)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.modular.extract import extract
from bench.modular.masking import maskable_units
from bench.protocol.method import Method, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ModuleSet, unit_kind


class DummyMethod(Method):
    """The smallest complete method: plain training; every class's module keeps the first half
    (rounded up) of every maskable unit's outputs, and a reused module is that half, extracted."""

    name = "dummy"
    description = "test method: plain training, modules keep a fixed half of every layer"

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Train the zoo model with the task loss."""
        return TrainedModel(ctx.model, ctx.fit(ctx.model, ctx.task_loss))

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """The same half of every layer for every class."""
        named = maskable_units(trained.model)
        sizes = [unit.num_units for _, unit in named]
        row = torch.cat([torch.arange(size) < (size + 1) // 2 for size in sizes])  # (units,) bool
        return ModuleSet(unit_kind(ctx.family), [name for name, _ in named], sizes,
                         row.expand(ctx.num_classes, -1).clone())

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """The retained half, physically extracted."""
        return extract(trained.model, modules.target(classes))
