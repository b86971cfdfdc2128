"""SeaM: re-engineering a trained model for one sub-task by a gradient search of weight masks (Qi et al.,
ICSE 2023; ``qibinhang/SeaM``).

It starts from the standard model of its cell, frozen. Per task, every weight and bias of every conv
and linear layer gets a real-valued score (initialised to 1), binarised in the forward pass with a
straight-through backward pass (``bench.modular.mask_search``); the model's logits go through a task
head (ReLU, Linear(N, |task|); two outputs for a one-class task, below). Loss = cross-entropy + alpha *
the share of kept weights; epochs alternate one head-only epoch and four mask epochs. The epoch kept
is the one keeping the fewest weights among those whose validation accuracy reaches the original
model's on the task.

Its modules keep the model's shape with individual weights zeroed: unstructured sparsity. Records
count their kept weights and the multiply-adds of those alone, and label them (``sparsity``).
There are no class modules: every class's module is the whole model, as for ``standard``. A one-class
task (the module of class c the patching and composition scenarios read) is the authors' binary
setting: c's images labelled 0 and as many images of the other classes, drawn with the cell's seed,
labelled 1, a two-output head, and the composed module's one column the target logit minus the rest's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.data import BatchLoader
from bench.hookspecs import hookimpl
from bench.modular.ensemble import TargetMinusRest, TaskModule
from bench.modular.mask_search import HEAD, MASK, MaskSearch, Rates, alternating, freeze
from bench.modular.selection import SmallestReaching
from bench.modular.straight_through import kept_share
from bench.modular.weight_masks import attach_masks, attach_scores
from bench.pipeline.metrics import accuracy, one_vs_rest_accuracy
from bench.protocol.method import PostTrainingMethod, StageContext, TrainedModel, check_positive
from bench.protocol.modules import ModuleSet

REENGINEER = {"stage": "compose"}
CYCLE = (HEAD, MASK, MASK, MASK, MASK)  # Reengineer.alter: strategy [0, 1, 1, 1, 1] repeated


@dataclass
class SeaMHparams:
    """SeaM hyperparameters; the defaults are the authors' (``src/binary_class/model_reengineering.py``).

    alpha: weight of the share of kept weights in the loss (1.0). lr_mask: Adam learning rate of the
    weight scores (0.1; the authors' README sets it per model, e.g. 0.01 for VGG16 on CIFAR-10).
    lr_head: Adam learning rate of the task head (0.1). epochs: head and mask epochs together (300).
    batch_size: (64). Every value must be positive.
    """

    alpha: float = field(default=1.0, metadata=REENGINEER)
    lr_mask: float = field(default=0.1, metadata=REENGINEER)
    lr_head: float = field(default=0.1, metadata=REENGINEER)
    epochs: int = field(default=300, metadata=REENGINEER)
    batch_size: int = field(default=64, metadata=REENGINEER)

    def __post_init__(self) -> None:
        check_positive(self)

    def rates(self) -> Rates:
        """One Adam for the head epochs, one for the mask epochs (scores and head), each kept throughout."""
        return Rates(head=self.lr_head, later_head=self.lr_head, mask=self.lr_mask, mask_head=self.lr_head,
                     restart=False)


def task_head(num_classes: int, outputs: int) -> nn.Sequential:
    """The re-engineered model's head on its logits: ReLU, Linear(N, |task|)."""
    return nn.Sequential(nn.ReLU(), nn.Linear(num_classes, outputs))


class WeightReengineer(nn.Module):
    """A frozen model with a score per weight and bias of its conv and linear layers, its logits through a head."""

    def __init__(self, model: nn.Module, num_classes: int, outputs: int) -> None:
        super().__init__()
        self.model = freeze(copy.deepcopy(model))
        self.scores = attach_scores(self.model)  # qualified parameter name -> scores
        self.head = task_head(num_classes, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The masked model's logits."""
        return self.model(x)

    def head_output(self, features: torch.Tensor) -> torch.Tensor:
        """The task head's logits."""
        return self.head(features)

    def mask_scores(self) -> list[nn.Parameter]:
        """Every weight's and bias's scores."""
        return list(self.scores.values())

    def head_parameters(self) -> list[nn.Parameter]:
        """The task head's parameters."""
        return list(self.head.parameters())

    def kept(self) -> torch.Tensor:
        """The share of kept weights and biases (SeaM's ``count_weight_ratio``)."""
        return kept_share(self.mask_scores())

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The masks (``mask.<parameter>``, bool) and the head's weights (``head.<name>``)."""
        masks = {f"mask.{name}": (s.detach() > 0).cpu() for name, s in self.scores.items()}
        return {**masks, **{f"head.{k}": v.detach().cpu().clone() for k, v in self.head.state_dict().items()}}


class SeaM(PostTrainingMethod):
    """SeaM on the standard model: per task, a gradient search of weight masks and a task head."""

    name = "seam"
    description = "SeaM (ICSE'23): per task, post-training search of weight masks (unstructured sparsity)"
    Hparams = SeaMHparams
    one_class_compose = "one-vs-rest"

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """No class modules: every class keeps every unit (the search runs per task, in ``compose``)."""
        return ModuleSet.whole(ctx.activity(), ctx.num_classes, ctx.family)

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """The model re-engineered for ``classes``: its chosen weight masks and task head. A one-class task is
        the authors' binary one, the class against as many images of the others (``one_vs_rest``); its module's
        one column is the head's target logit minus its rest logit."""
        hp, binary = ctx.hparams, len(classes) == 1
        task = ctx.data.one_vs_rest(classes[0], ctx.seed) if binary else ctx.data.task(classes)
        torch.manual_seed(ctx.seed)
        searcher = WeightReengineer(trained.model, ctx.num_classes, task.num_classes).to(ctx.device)
        train = BatchLoader(task.train, hp.batch_size, mean=task.mean, std=task.std, device=ctx.device,
                            shuffle=True, augment=ctx.recipe.train_augment(task.augment), seed=ctx.seed)
        val = BatchLoader(task.val, ctx.recipe.eval_batch_size, mean=task.mean, std=task.std, device=ctx.device)
        reference = (one_vs_rest_accuracy(trained.model, val, classes[0]) if binary
                     else accuracy(trained.model, val, columns=classes))
        bf16 = ctx.recipe.resolved_precision(ctx.device.type) == "bf16"
        phases = alternating(0, CYCLE, hp.epochs)
        search = MaskSearch(searcher, phases, hp.rates(), hp.alpha, train, val, bf16, f"seam {_label(classes)}")
        state = search.run(SmallestReaching(reference), ctx.checkpoint, ctx.progress).state
        masks = {k.removeprefix("mask."): v for k, v in state.items() if k.startswith("mask.")}
        head = task_head(ctx.num_classes, task.num_classes)
        head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
        module_head = nn.Sequential(head, TargetMinusRest()) if binary else head
        return TaskModule(attach_masks(copy.deepcopy(trained.model), masks), module_head, classes, ctx.num_classes)


def _label(classes: Sequence[int]) -> str:
    return ",".join(str(c) for c in classes)


@hookimpl
def register_methods(register: Any) -> None:
    """SeaM."""
    register(SeaM())
