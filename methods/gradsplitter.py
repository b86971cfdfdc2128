"""GradSplitter: post-training modularization by a gradient search of kernel masks (Qi et al., the
CNNSplitter authors' successor; ``qibinhang/GradSplitter``).

It starts from the standard model of its cell, frozen. Per class, every masked conv layer gets a
real-valued score per kernel (initialised to 1), binarised in the forward pass with a
straight-through backward pass (``bench.modular.mask_search``); a class module is the model with
its kept kernels, its logits through a head (ReLU, Linear(N, 10), ReLU, Linear(10, 1), sigmoid).
The N modules' outputs are N logits: loss = cross-entropy + alpha * the mean share of kept kernels.
Head-only epochs, then cycles of mask epochs and head epochs; the epoch kept is the one with the
fewest kernels among those losing under one point of validation accuracy against the model. A task
is one extracted module per class, composed like CNNSplitter's: the argmax of their scores.
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
from bench.modular.ensemble import ClassModules
from bench.modular.extract import extract
from bench.modular.mask_search import HEAD, MASK, MaskSearch, Rates, alternating, freeze
from bench.modular.masking import maskable_units
from bench.modular.selection import FewestKept
from bench.modular.straight_through import binarize, kept_share
from bench.pipeline.metrics import accuracy
from bench.protocol.method import PostTrainingMethod, StageContext, TrainedModel, check_positive
from bench.protocol.modules import ModuleSet

SEARCH = {"stage": "modularize"}
HEAD_HIDDEN = 10  # the module head's hidden width (src/splitters/*.py: Linear(n_class, 10), ReLU, Linear(10, 1))
LATER_HEAD_LR = 0.1  # head epochs after the first mask epoch run at lr_head * 0.1 (src/grad_splitter.py)


@dataclass
class GradSplitterHparams:
    """GradSplitter hyperparameters; the defaults are the authors' (``src/grad_splitter.py``).

    alpha: weight of the mean kept-kernel share in the loss (0.1). lr_head: Adam learning rate of the
    heads in head epochs (0.01; x0.1 once a mask epoch has run). lr_mask: Adam learning rate of the
    kernel scores and the heads together in mask epochs (0.001, the authors' ``lr_modularity``).
    head_epochs: head-only epochs first (5). cycles: mask/head cycles after them (20: the authors' 140
    epochs), each of cycle_masks mask epochs (5) then cycle_heads head epochs (2). batch_size: (64).
    tolerance: validation accuracy an epoch may lose against the model and still be chosen (0.01: under
    one point, ``src/script/select_modules.py``). Every value must be positive.
    """

    alpha: float = field(default=0.1, metadata=SEARCH)
    lr_head: float = field(default=0.01, metadata=SEARCH)
    lr_mask: float = field(default=0.001, metadata=SEARCH)
    head_epochs: int = field(default=5, metadata=SEARCH)
    cycles: int = field(default=20, metadata=SEARCH)
    cycle_masks: int = field(default=5, metadata=SEARCH)
    cycle_heads: int = field(default=2, metadata=SEARCH)
    batch_size: int = field(default=64, metadata=SEARCH)
    tolerance: float = field(default=0.01, metadata=SEARCH)

    def __post_init__(self) -> None:
        check_positive(self)

    def phases(self) -> tuple[str, ...]:
        """HEAD or MASK per epoch."""
        cycle = (MASK,) * self.cycle_masks + (HEAD,) * self.cycle_heads
        return alternating(self.head_epochs, cycle, self.head_epochs + self.cycles * len(cycle))

    def rates(self) -> Rates:
        """Adam's learning rates per phase: a fresh Adam at every change of phase, as the authors."""
        return Rates(head=self.lr_head, later_head=self.lr_head * LATER_HEAD_LR, mask=self.lr_mask,
                     mask_head=self.lr_mask, restart=True)


def class_head(num_classes: int) -> nn.Sequential:
    """A class module's head on the model's logits: ReLU, Linear(N, 10), ReLU, Linear(10, 1), sigmoid."""
    return nn.Sequential(nn.ReLU(), nn.Linear(num_classes, HEAD_HIDDEN), nn.ReLU(), nn.Linear(HEAD_HIDDEN, 1),
                         nn.Sigmoid())


class ClassKernelScores(nn.Module):
    """A masked unit's generator in the search: a row of kernel scores per class. The input is the batch
    repeated once per class (class-major); each copy gets its class's binarised row."""

    def __init__(self, classes: int, kernels: int) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.ones(classes, kernels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = binarize(self.scores)  # (classes, kernels)
        return mask.repeat_interleave(x.shape[0] // mask.shape[0], dim=0)  # (classes * batch, kernels)


class KernelSplitter(nn.Module):
    """The N class modules of a frozen CNN in one pass; forward gives each module's score, (batch, N)."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = freeze(copy.deepcopy(model))
        self.generators = []
        for _, unit in maskable_units(self.model):
            unit.generator = ClassKernelScores(num_classes, unit.num_units)
            self.generators.append(unit.generator)
        self.heads = nn.ModuleList(class_head(num_classes) for _ in range(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_output(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits for each class module, (classes, batch, classes)."""
        n = len(self.heads)
        return self.model(x.repeat(n, 1, 1, 1)).view(n, x.shape[0], -1)

    def head_output(self, features: torch.Tensor) -> torch.Tensor:
        """Each class module's score through its head, (batch, classes)."""
        return torch.cat([head(out) for head, out in zip(self.heads, features, strict=True)], dim=1)

    def mask_scores(self) -> list[nn.Parameter]:
        """Every masked unit's (classes, kernels) scores."""
        return [g.scores for g in self.generators]

    def head_parameters(self) -> list[nn.Parameter]:
        """The class heads' parameters."""
        return list(self.heads.parameters())

    def kept(self) -> torch.Tensor:
        """The mean share of kept kernels over the class modules."""
        return kept_share(self.mask_scores())

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The scores (classes, units) and the heads' weights (``head.<class>.<name>``)."""
        scores = torch.cat([s.detach() for s in self.mask_scores()], dim=1).cpu()
        heads = {f"head.{k}": v.detach().cpu().clone() for k, v in self.heads.state_dict().items()}
        return {"scores": scores, **heads}


def kept_kernels(scores: torch.Tensor, sizes: Sequence[int]) -> tuple[torch.Tensor, int]:
    """(classes, units) keep masks from the scores (> 0), a layer no kernel of which is kept keeping its
    highest-scored one; and how many (class, layer) pairs needed that."""
    keep = scores > 0
    fallbacks = 0
    for layer_keep, layer_scores in zip(keep.split(list(sizes), dim=1), scores.split(list(sizes), dim=1),
                                        strict=True):
        empty = ~layer_keep.any(dim=1)  # (classes,)
        layer_keep[empty, layer_scores[empty].argmax(dim=1)] = True
        fallbacks += int(empty.sum())
    return keep, fallbacks


class GradSplitter(PostTrainingMethod):
    """GradSplitter on the standard model: per class a gradient search of kernel masks, one module per class."""

    name = "gradsplitter"
    description = "GradSplitter: post-training gradient search of per-class kernel masks, one module per class"
    families = ("cnn",)
    Hparams = GradSplitterHparams

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """The searched kernel masks and heads of every class."""
        hp, model = ctx.hparams, trained.model
        named = maskable_units(model)
        layers, sizes = [n for n, _ in named], [u.num_units for _, u in named]
        val = ctx.batches("val")
        torch.manual_seed(ctx.seed)
        splitter = KernelSplitter(model, ctx.num_classes).to(ctx.device)
        train = BatchLoader(ctx.data.train, hp.batch_size, mean=ctx.data.mean, std=ctx.data.std, device=ctx.device,
                            shuffle=True, seed=ctx.seed)  # unaugmented, as the authors' search loader
        reference = accuracy(model, val)
        bf16 = ctx.recipe.resolved_precision(ctx.device.type) == "bf16"
        search = MaskSearch(splitter, hp.phases(), hp.rates(), hp.alpha, train, val, bf16, "gradsplitter")
        result = search.run(FewestKept(reference, hp.tolerance), ctx.checkpoint, ctx.progress)
        keep, fallbacks = kept_kernels(result.state.pop("scores"), sizes)
        row = result.history[result.epoch]
        figures = {"search_seconds": result.seconds, "epochs": float(len(result.history)),
                   "chosen_epoch": float(result.epoch + 1), "search_val_acc": row["val_acc"],
                   "model_val_acc": reference, "empty_layer_fallbacks": float(fallbacks)}
        return ModuleSet("kernel", layers, sizes, keep, figures, tensors=result.state)

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """One extracted module per class with its head, voting with its score."""
        class_modules = [nn.Sequential(extract(trained.model, modules.split(modules.masks[c])),
                                       _head_of(modules, c, ctx.num_classes)) for c in classes]
        return ClassModules(class_modules, classes, ctx.num_classes, vote_columns=[0] * len(classes))


def _head_of(modules: ModuleSet, c: int, num_classes: int) -> nn.Sequential:
    """Class ``c``'s trained head, from the tensors the search left in ``modules``."""
    head = class_head(num_classes)
    prefix = f"head.{c}."
    head.load_state_dict({k.removeprefix(prefix): v for k, v in modules.tensors.items() if k.startswith(prefix)})
    return head


@hookimpl
def register_methods(register: Any) -> None:
    """GradSplitter."""
    register(GradSplitter())
