"""Modularizing while training: the part MwT, NeMo and their successors share.

A ``MaskedMethod`` trains the zoo model with mask generators on its maskable units and an extra
loss on the masks; its modules come from the per-class threshold rule, and a reused module is
the physically extracted model. A subclass supplies only ``mask_loss``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.errors import UsageError
from bench.modular.activity import check_empty_layer, threshold_modules
from bench.modular.extract import extract
from bench.modular.groups import modular_groups
from bench.modular.masking import attach_generators, current_masks
from bench.modular.rounding import task_keep
from bench.modular.similarity import unit_rate
from bench.protocol.method import Method, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ModuleSet, unit_kind

EXTRACTION_MODES = ("exact", "paper")
MODULE_MASKS = ("hard", "soft")


def check_extraction(mode: str) -> None:
    """UsageError unless ``mode`` is a ViT extraction mode ('exact' or 'paper')."""
    if mode not in EXTRACTION_MODES:
        raise UsageError(f"bad value for extraction: '{mode}' (choose exact or paper)")


@dataclass
class MaskedHparams:
    """Hyperparameters every masked method shares (its own dataclass subclasses this one).

    mask_lr: learning rate of the mask generators (None: the model's).
    extraction: how a ViT module is built: 'exact' (function-preserving, default) or 'paper' (the
    NeMo authors' module: narrowed residual stream, fresh LayerNorms, ReLU + Linear task head).
    empty_layer: what a class module keeps of a layer no unit of which reaches any threshold down
    to 0.05: 'most_frequent' (its most frequent unit, default), 'error' (MwT: the run fails),
    'random5' (NeMo CNNs: a seeded random 5%), 'whole' (NeMo ViTs: every unit).
    channel_multiple: round each layer of a reused module up to a multiple of this many units, by
    the task's next most frequent ones (1: off; 8 suits GPU tensor cores); recorded as its own
    retention (``retention_rounded``).
    module_masks: what a reused CNN module does with its kept kernels: 'hard' (they pass unscaled, the
    generators are dropped, as the MwT authors' modularizer builds modules: ``keep_generator=False``)
    or 'soft' (each kept kernel is scaled by its generator's soft mask, computed from the module's own
    input: the default of the authors' module classes). ViT modules keep hard masks.
    """

    mask_lr: float | None = None
    extraction: str = field(default="exact", metadata={"stage": "compose"})
    empty_layer: str = field(default="most_frequent", metadata={"stage": "modularize"})
    channel_multiple: int = field(default=1, metadata={"stage": "compose"})
    module_masks: str = field(default="hard", metadata={"stage": "compose"})

    def __post_init__(self) -> None:
        check_extraction(self.extraction)
        if self.module_masks not in MODULE_MASKS:
            raise UsageError(f"bad value for module_masks: '{self.module_masks}' (choose hard or soft)")
        check_empty_layer(self.empty_layer)
        if self.channel_multiple < 1:
            raise ValueError(f"channel_multiple must be at least 1, got {self.channel_multiple}")
        if self.mask_lr is not None and not self.mask_lr > 0:
            raise ValueError(f"mask_lr must be greater than 0 (or none: the model's), got {self.mask_lr}")


class MaskedMethod(Method):
    """Base of methods that modularize while training (mask generators + a mask loss).

    Hyperparameter dataclasses of subclasses should subclass ``MaskedHparams``; one that does not
    gets its defaults (model lr for the generators, 'exact' extraction, 'most_frequent').
    """

    def mask_loss(self, masks: list[torch.Tensor], labels: torch.Tensor, hparams: Any,
                  family: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The method's loss on the masks of one batch (one (batch, units) tensor per masked unit)."""
        raise NotImplementedError

    def build(self, ctx: TrainContext) -> nn.Module:
        """The zoo model with a mask generator on every maskable unit."""
        return attach_generators(ctx.new_model())

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Task loss + mask loss; generators, biases and norms without weight decay (``modular_groups``)."""
        groups = modular_groups(ctx.model, getattr(ctx.hparams, "mask_lr", None) or ctx.recipe.lr)

        def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
            task, logs = ctx.task_loss(model, x, y)
            masks = current_masks(model)
            extra, extra_logs = self.mask_loss(masks, y, ctx.hparams, ctx.family)
            return task + extra, {**logs, **extra_logs, "unit_rate": unit_rate(masks)}

        return TrainedModel(ctx.model, ctx.fit(ctx.model, loss_fn, groups))

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """Class modules by the frequency threshold rule over the training data.

        ``metrics`` counts the class modules that needed the empty-layer rule: in all
        ('empty_layer_fallbacks') and per layer where it fired ('empty_layer_fallbacks.<layer>').
        """
        stats = ctx.activity()
        rule = getattr(ctx.hparams, "empty_layer", "most_frequent")
        masks, fallbacks = threshold_modules(stats, ctx.threshold, rule, ctx.seed)
        metrics = {"empty_layer_fallbacks": sum(fallbacks)}
        fired = {name: n for name, n in zip(stats.layers, fallbacks, strict=True) if n}
        metrics.update({f"empty_layer_fallbacks.{name}": n for name, n in fired.items()})
        return ModuleSet(unit_kind(ctx.family), stats.layers, stats.sizes, masks, metrics, stats.frequencies().float())

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """The trained model with only the target module's units, physically removed."""
        mode = getattr(ctx.hparams, "extraction", "exact") if ctx.family == "vit" else "exact"
        soft = ctx.family == "cnn" and getattr(ctx.hparams, "module_masks", "hard") == "soft"
        keep = task_keep(modules, classes, getattr(ctx.hparams, "channel_multiple", 1))
        return extract(trained.model, modules.split(keep), mode=mode, soft_masks=soft)
