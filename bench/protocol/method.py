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

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from bench.data import BatchLoader, DataBundle
from bench.errors import BenchError
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
    ``new_model()`` builds a fresh zoo model of the cell on ``device``; for a method that
    ``starts_from`` another method's trained model, ``start_model()`` returns a copy of it (on
    ``device``, trained by the runner first and cached, like every other stage).
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
    start_model: Callable[[], nn.Module] | None = None


class StageCheckpoint(Protocol):
    """Resumable state of a long stage (a search), stored atomically by the runner."""

    def load(self) -> Any | None:
        """The last state saved for this stage and key, or None."""

    def save(self, state: Any) -> None:
        """Keep ``state`` (tensors and plain values only) so that a killed run resumes from it."""


class StageProgress(Protocol):
    """A progress bar a long stage may drive (no-op when the run is quiet)."""

    def start(self, description: str, total: int) -> None:
        """(Re)start the bar with a new total."""

    def advance(self, description: str | None = None) -> None:
        """One step done; optionally a new label (e.g. the best fitness so far)."""


class NoCheckpoint:
    """A checkpoint that keeps nothing (a stage run outside the runner)."""

    def load(self) -> None:
        """Nothing saved."""
        return None

    def save(self, state: Any) -> None:
        """Forget ``state``."""


class NoProgress:
    """A progress bar that shows nothing."""

    def start(self, description: str, total: int) -> None:
        """Show nothing."""

    def advance(self, description: str | None = None) -> None:
        """Show nothing."""


@dataclass
class StageContext(_CellFacts):
    """What ``modularize`` and ``compose`` receive.

    ``activity()`` runs the trained model once over the training split (no augmentation) and
    returns per-class unit activity counts (cached); ``threshold`` is the module threshold of
    this record; ``batches(split)`` gives a split's normalised batches on ``device`` in a fixed
    order; ``checkpoint`` keeps a long stage's state so a killed run resumes, and ``progress``
    shows its advance; ``seed`` is the cell's seed.
    """

    spec: ModelSpec
    data: DataBundle
    device: torch.device
    recipe: Recipe
    hparams: Any
    threshold: float
    activity: Callable[[], ActivityStats]
    seed: int = 0
    checkpoint: StageCheckpoint = field(default_factory=NoCheckpoint)
    progress: StageProgress = field(default_factory=NoProgress)

    def batches(self, split: str, batch_size: int | None = None) -> BatchLoader:
        """The ``split`` ('train', 'val', 'test') in order, unaugmented, normalised, on ``device``."""
        return BatchLoader(getattr(self.data, split), batch_size or self.recipe.eval_batch_size,
                           mean=self.data.mean, std=self.data.std, device=self.device)


class Method:
    """Base class of a modularization method; subclass it and register an instance.

    Class attributes: ``name`` (used on the command line), ``description`` (one line for
    ``bench list``), ``families`` (model families supported), ``Hparams`` (a dataclass whose
    defaults are documented), ``finetune`` (whether reused modules are fine-tuned; the standard
    model is reused as it is), ``starts_from`` (the name of a
    method whose trained model this one starts from, e.g. 'standard' for a post-training method;
    ``ctx.start_model()`` hands it over), ``per_class_modules`` (whether ``compose`` runs one module
    per target class, an ensemble such as CNNSplitter's: a task's controls then match each class
    module's units per layer, not those of the classes' union), ``one_class_compose`` (how ``compose``
    builds a one-class task's module when not as any other task's, e.g. SeaM's 'one-vs-rest'; the keys
    of the stages that compose one hold it).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...]] = ("cnn", "vit")
    Hparams: ClassVar[type] = NoHparams
    finetune: ClassVar[bool] = True
    starts_from: ClassVar[str | None] = None
    per_class_modules: ClassVar[bool] = False
    one_class_compose: ClassVar[str | None] = None

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


class PostTrainingMethod(Method):
    """A method that modularizes the cell's standard model after its training (CNNSplitter, GradSplitter,
    SeaM): ``train`` hands that model over unchanged."""

    starts_from: ClassVar[str | None] = "standard"

    def train(self, ctx: TrainContext) -> TrainedModel:
        """The standard model as it is: nothing is trained."""
        if ctx.start_model is None:
            raise BenchError(f"{self.name} starts from the standard model, and this runner did not hand it over")
        return TrainedModel(ctx.start_model())


def check_positive(hparams: Any) -> None:
    """ValueError naming the first field of the dataclass ``hparams`` that is not positive."""
    for f in dataclasses.fields(hparams):
        if not getattr(hparams, f.name) > 0:
            raise ValueError(f"{f.name} must be positive, got {getattr(hparams, f.name)}")


REQUIRED_STAGES = ("train", "modularize", "compose")


def missing_stages(method: object) -> list[str]:
    """Stages a registered method object does not implement."""
    missing = []
    for stage in REQUIRED_STAGES:
        impl = getattr(type(method), stage, None)
        if not callable(impl) or impl is getattr(Method, stage):
            missing.append(stage)
    return missing
