"""The standard method: plain training, the baseline every other method is measured against.

Its module for any task is the whole model, reused as it is: logits restricted to the target
classes, no fine-tuning.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import nn

from bench.hookspecs import hookimpl
from bench.protocol.method import Method, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ModuleSet


class Standard(Method):
    """Cross-entropy training (DeiT: its distillation objective) with the preset's recipe."""

    name = "standard"
    description = "plain training; every class's module is the whole model (the baseline)"
    finetune = False

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Train the zoo model with the task loss."""
        history = ctx.fit(ctx.model, ctx.task_loss)
        return TrainedModel(ctx.model, history)

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """Every class keeps every unit."""
        return ModuleSet.whole(ctx.activity(), ctx.num_classes, ctx.family)

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """The whole trained model."""
        return copy.deepcopy(trained.model)


@hookimpl
def register_methods(register: Any) -> None:
    """The baseline."""
    register(Standard())
