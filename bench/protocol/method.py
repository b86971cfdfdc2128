"""The method protocol: what a modularization method provides and what each stage receives.

A method is a small class with a name, a description, the model families it supports, a
dataclass of hyperparameters with documented defaults, and three stages:

1. ``train(ctx) -> TrainedModel``: train ``ctx.model`` (built by ``build``) with ``ctx.fit``.
2. ``modularize(ctx, trained) -> ModuleSet``: per-class masks over the model's units.
3. ``compose(ctx, trained, modules, classes) -> nn.Module``: a physically smaller model whose
   logits cover all the data set's classes; the runner scores it on the target columns, then
   attaches a task head and fine-tunes it.

A method never computes a metric and never writes a file: the runner does both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bench.data import DataBundle
from bench.models.spec import ModelSpec
from bench.protocol.modules import ActivityStats, ModuleSet
from bench.protocol.recipe import Recipe

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class NoHparams:
    """A method without hyperparameters."""


@dataclass
class TrainedModel:
    """A trained model and its per-epoch history (list of metric dicts)."""

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)


class _CellFacts:
    """What every stage context can tell about its cell (needs ``spec`` and ``data`` fields)."""

    spec: ModelSpec
    data: DataBundle

    @property
    def family(self) -> str:
        """'cnn' or 'vit'."""
        return self.spec.family

    @property
    def num_classes(self) -> int:
        """Classes of the data set."""
        return self.data.num_classes


@dataclass
class TrainContext(_CellFacts):
    """What ``build`` and ``train`` receive.

    ``fit(model, loss_fn, param_groups=None)`` is the runner's training loop (optimizer and schedule
    from ``recipe``, progress bars, events, AMP); ``task_loss(model, x, y)`` is the plain task
    objective (cross-entropy, or DeiT's distillation loss when the model has a distillation token);
    ``new_model()`` builds a fresh zoo model of the cell on ``device``.
    """

    spec: ModelSpec
    model_args: dict[str, Any]
    data: DataBundle
    device: torch.device
    recipe: Recipe
    hparams: Any
    seed: int
    fit: Callable[..., list[dict[str, float]]]
    task_loss: LossFn
    new_model: Callable[[], nn.Module]
    model: nn.Module | None = None


@dataclass
class StageContext(_CellFacts):
    """What ``modularize`` and ``compose`` receive.

    ``activity()`` runs the trained model once over the training split (no augmentation) and
    returns per-class unit activity counts (cached); ``threshold`` is the module threshold of
    this record.
    """

    spec: ModelSpec
    data: DataBundle
    device: torch.device
    recipe: Recipe
    hparams: Any
    threshold: float
    activity: Callable[[], ActivityStats]


class Method:
    """Base class of a modularization method; subclass it and register an instance.

    Class attributes: ``name`` (used on the command line), ``description`` (one line for
    ``bench list``), ``families`` (model families supported), ``unit`` ('kernel', 'neuron' or
    'model'), ``Hparams`` (a dataclass whose defaults are documented), ``finetune`` (whether reused
    modules are fine-tuned; the standard model is reused as it is).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...]] = ("cnn", "vit")
    unit: ClassVar[str] = "kernel"
    Hparams: ClassVar[type] = NoHparams
    finetune: ClassVar[bool] = True

    def hparams(self, model: ModelSpec) -> Any:
        """Default hyperparameters for a model (override for per-model or per-family defaults)."""
        return self.Hparams()

    def build(self, ctx: TrainContext) -> nn.Module:
        """The architecture this method trains; by default the zoo model as it is."""
        return ctx.new_model()

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Train ``ctx.model`` and return it."""
        raise NotImplementedError

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """Per-class module masks over the trained model's units."""
        raise NotImplementedError

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """A smaller model for the sub-task ``classes``, with logits over all classes."""
        raise NotImplementedError


REQUIRED_STAGES = ("train", "modularize", "compose")


def missing_stages(method: object) -> list[str]:
    """Stages a registered method object does not implement."""
    missing = []
    for stage in REQUIRED_STAGES:
        impl = getattr(type(method), stage, None)
        if not callable(impl) or impl is getattr(Method, stage):
            missing.append(stage)
    return missing
