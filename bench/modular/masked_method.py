"""Modularizing while training: the part MwT, NeMo and their successors share.

A ``MaskedMethod`` trains the zoo model with mask generators on its maskable units and an extra
loss on the masks; its modules come from the per-class threshold rule, and a reused module is
the physically extracted model. A subclass supplies only ``mask_loss``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bench.errors import UsageError
from bench.modular.activity import threshold_masks
from bench.modular.extract import extract
from bench.modular.masking import attach_generators, current_masks, generator_parameters
from bench.modular.similarity import unit_rate
from bench.protocol.method import Method, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ModuleSet

EXTRACTION_MODES = ("exact", "paper")


def check_extraction(mode: str) -> None:
    """UsageError unless ``mode`` is a ViT extraction mode ('exact' or 'paper')."""
    if mode not in EXTRACTION_MODES:
        raise UsageError(f"bad value for extraction: '{mode}' (choose exact or paper)")


class MaskedMethod(Method):
    """Base of methods that modularize while training (mask generators + a mask loss).

    Hyperparameter dataclasses of subclasses may define ``mask_lr`` (None: the model's lr) and
    ``extraction`` ('exact' or 'paper', ViTs only).
    """

    def mask_loss(self, masks: list[torch.Tensor], labels: torch.Tensor, hparams: Any,
                  family: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The method's loss on the masks of one batch (one (batch, units) tensor per masked unit)."""
        raise NotImplementedError

    def build(self, ctx: TrainContext) -> nn.Module:
        """The zoo model with a mask generator on every maskable unit."""
        return attach_generators(ctx.new_model())

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Task loss + mask loss; model and mask generators in their own parameter groups."""
        model_params, generator_params = generator_parameters(ctx.model)
        mask_lr = getattr(ctx.hparams, "mask_lr", None) or ctx.recipe.lr
        groups = [{"params": model_params}, {"params": generator_params, "lr": mask_lr}]

        def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
            task, logs = ctx.task_loss(model, x, y)
            masks = current_masks(model)
            extra, extra_logs = self.mask_loss(masks, y, ctx.hparams, ctx.family)
            return task + extra, {**logs, **extra_logs, "unit_rate": unit_rate(masks)}

        return TrainedModel(ctx.model, ctx.fit(ctx.model, loss_fn, groups))

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """Class modules by the frequency threshold rule over the training data."""
        stats = ctx.activity()
        unit = "kernel" if ctx.family == "cnn" else "neuron"
        return ModuleSet(unit, stats.layers, stats.sizes, threshold_masks(stats, ctx.threshold))

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """The trained model with only the target module's units, physically removed."""
        mode = getattr(ctx.hparams, "extraction", "exact") if ctx.family == "vit" else "exact"
        return extract(trained.model, modules.target(classes), mode=mode)
