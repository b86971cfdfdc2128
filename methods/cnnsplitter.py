"""CNNSplitter: post-training modularization by a cooperative genetic search (Qi et al., ASE 2022).

It starts from the standard model of its cell, unchanged. Per class, kernels are ranked by their
mean post-ReLU L1 on confidently classified held-out samples and cut into groups; one genetic
population per class searches which groups a module keeps, every solution rated by the best
composition of all classes it joins (accuracy and kernel diversity). The chosen module of a class
is the model with only its kernels, voting with its own-class logit; a task is the argmax of its
classes' votes. ``published=DIR`` reuses the authors' released modules instead of searching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import UsageError
from bench.hookspecs import hookimpl
from bench.importers.authors import Mapping, read_checkpoint
from bench.importers.layouts import RESCNN, SIMCNN
from bench.modular.batchnorm import recalibrate_batchnorm
from bench.modular.candidates import CandidateScorer
from bench.modular.ensemble import ClassModules
from bench.modular.evolution import Evolution, SearchSettings
from bench.modular.extract import extract
from bench.modular.genetic import Breeding
from bench.modular.importance import importance_orders, kernel_importance
from bench.modular.kernel_groups import GeneLayout
from bench.modular.masking import maskable_units
from bench.modular.published import IMAGENET_NORM, chosen, published_keep
from bench.protocol.method import PostTrainingMethod, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ModuleSet

SEARCH = {"stage": "modularize"}
STACKED_SAMPLES = 4096  # samples a forward pass scores on a GPU when samples_per_pass is 0 (auto)
PUBLISHED_LAYOUTS = {"simcnn": SIMCNN, "rescnn": RESCNN}  # CNNSplitter's key names, as the importers know them


@dataclass
class CNNSplitterHparams:
    """CNNSplitter hyperparameters; the defaults are the paper's.

    population: solutions per class (100). generations: breeding steps after the initial population
    (200). parents: the fittest that mate by single-point crossover (50). elites: the fittest kept
    as they are (20). mutation: share of a child's genes reset to a random bit (0.05; the authors
    use 0.1 on SVHN). groups_small / groups_large / large_layer: kernel groups of a layer, 10 under
    256 kernels, else 100. confidence: softmax confidence of the held-out samples whose feature maps
    measure kernel importance (0.9). active_min / active_max: share of each layer's genes set in an
    initial chromosome, drawn towards important groups (0.4-0.8). beam_min / beam_max: compositions a
    merge of classes keeps (50-500). samples_per_pass: inputs a forward pass scores, candidates
    stacked along the batch (speed only; 0: 4096 on a GPU, one candidate's held-out set on a CPU,
    where stacking ran 1.6-3x slower on 2 cores). published: a folder of the authors' released modules
    (``simcnn_cifar10``, ...) to reuse instead of searching; the cell's model must be
    ``simcnn:bn=false`` or ``rescnn:bn=false`` and its data ImageNet-normalised. recalibrate_bn:
    re-estimate a composed module's BatchNorm statistics on the training images, and rate each
    candidate of the search with its own statistics over the held-out samples, so the search scores
    the modules compose builds (a no-op without BN: the authors' CNNs have none; on the zoo's BN
    models a module cut without it answers one class).
    """

    population: int = field(default=100, metadata=SEARCH)
    generations: int = field(default=200, metadata=SEARCH)
    parents: int = field(default=50, metadata=SEARCH)
    elites: int = field(default=20, metadata=SEARCH)
    mutation: float = field(default=0.05, metadata=SEARCH)
    groups_small: int = field(default=10, metadata=SEARCH)
    groups_large: int = field(default=100, metadata=SEARCH)
    large_layer: int = field(default=256, metadata=SEARCH)
    confidence: float = field(default=0.9, metadata=SEARCH)
    active_min: float = field(default=0.4, metadata=SEARCH)
    active_max: float = field(default=0.8, metadata=SEARCH)
    beam_min: int = field(default=50, metadata=SEARCH)
    beam_max: int = field(default=500, metadata=SEARCH)
    samples_per_pass: int = field(default=0, metadata=SEARCH)
    published: str | None = None
    recalibrate_bn: bool = field(default=True, metadata=SEARCH)

    def __post_init__(self) -> None:
        try:
            self.breeding().check()
        except ValueError as exc:
            raise UsageError(f"cnnsplitter: {exc}") from None
        for name in ("generations", "groups_small", "groups_large", "large_layer", "beam_min", "samples_per_pass"):
            if getattr(self, name) < (0 if name in ("generations", "samples_per_pass") else 1):
                raise UsageError(f"cnnsplitter: bad value for {name}: {getattr(self, name)}")
        if not 0 <= self.active_min <= self.active_max <= 1 or not 0 <= self.confidence <= 1:
            raise UsageError("cnnsplitter: active_min <= active_max and confidence must lie in [0, 1]")
        if self.beam_max < self.beam_min:
            raise UsageError(f"cnnsplitter: beam_max ({self.beam_max}) is below beam_min ({self.beam_min})")

    def samples_per_pass_on(self, device: torch.device, held_out: int) -> int:
        """Samples a scoring pass takes on ``device``: the setting, or (0, auto) many stacked candidates on
        a GPU and one candidate's ``held_out`` images on a CPU."""
        return self.samples_per_pass or (STACKED_SAMPLES if device.type == "cuda" else held_out)

    def breeding(self) -> Breeding:
        """The genetic operators' settings."""
        return Breeding(self.population, self.parents, self.elites, self.mutation)

    def settings(self) -> SearchSettings:
        """The search's settings."""
        return SearchSettings(self.generations, self.breeding(), (self.active_min, self.active_max),
                              self.beam_min, self.beam_max)


def search(ctx: StageContext, model: nn.Module, hparams: CNNSplitterHparams) -> tuple[torch.Tensor, dict[str, float]]:
    """The chosen modules (classes, searched units) bool and the search's figures."""
    val = list(ctx.batches("val"))
    inputs, labels = torch.cat([x for x, _ in val]), torch.cat([y for _, y in val])
    searched = [name for name, _ in maskable_units(model)]
    layout = GeneLayout.from_model(model, searched, hparams.groups_small, hparams.groups_large, hparams.large_layer)
    importance = kernel_importance(model, val, ctx.num_classes, layout.probes, hparams.confidence)
    bf16 = ctx.recipe.resolved_precision(ctx.device.type) == "bf16"
    per_pass = hparams.samples_per_pass_on(ctx.device, len(inputs))
    scorer = CandidateScorer(model, layout.unit_names, layout.unit_sizes, inputs, per_pass, bf16,
                             batch_stats=hparams.recalibrate_bn)
    evolution = Evolution(layout, importance_orders(importance), scorer, labels, ctx.num_classes,
                          hparams.settings(), ctx.seed)
    state = evolution.run(ctx.checkpoint, ctx.progress)
    figures = {"candidates_per_second": state.candidates_per_second, "search_seconds": state.seconds,
               "candidates": float(state.candidates), "generations": float(state.generation - 1),
               "chosen_generation": float(state.best_generation), "search_accuracy": state.best_accuracy}
    return state.best_keep, figures


class CNNSplitter(PostTrainingMethod):
    """CNNSplitter on the standard model: a genetic search per class, or the authors' published modules."""

    name = "cnnsplitter"
    description = "CNNSplitter (ASE'22): post-training genetic search over kernel groups, one module per class"
    families = ("cnn",)
    Hparams = CNNSplitterHparams
    starts_from = "standard"
    per_class_modules = True

    def train(self, ctx: TrainContext) -> TrainedModel:
        """The standard model as it is (or the published folder's trained model): nothing is trained."""
        if ctx.hparams.published:
            _check_published_cell(ctx)
            return TrainedModel(_published_weights(Path(ctx.hparams.published), ctx.model, ctx.spec.name))
        return super().train(ctx)

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """The searched (or published) kept kernels of every class."""
        model = trained.model
        named = maskable_units(model)
        layers, sizes = [n for n, _ in named], [u.num_units for _, u in named]
        if ctx.hparams.published:
            keep = published_keep(Path(ctx.hparams.published), model, ctx.spec.name, ctx.num_classes)
            return ModuleSet("kernel", layers, sizes, torch.cat([keep[name] for name in layers], dim=1))
        keep, figures = search(ctx, model, ctx.hparams)
        return ModuleSet("kernel", layers, sizes, keep, figures)

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """One extracted module per class, voting with its own-class logit (BatchNorm statistics re-estimated
        on the training images unless ``recalibrate_bn`` is off)."""
        keeps = self._class_keeps(ctx, trained.model, modules, classes)
        composed = ClassModules([extract(trained.model, keep) for keep in keeps], classes, ctx.num_classes)
        if ctx.hparams.recalibrate_bn:
            recalibrate_batchnorm(composed, ctx.batches("train"))
        return composed

    @staticmethod
    def _class_keeps(ctx: StageContext, model: nn.Module, modules: ModuleSet,
                     classes: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Per target class, the kept kernels of every unit the class module shrinks."""
        keeps = [modules.split(modules.masks[c]) for c in classes]
        if ctx.hparams.published:  # published modules shrink the first conv too, which no ModuleSet covers
            published = published_keep(Path(ctx.hparams.published), model, ctx.spec.name, ctx.num_classes)
            for keep, c in zip(keeps, classes, strict=True):
                keep.update({name: mask[c] for name, mask in published.items() if name not in keep})
        return keeps


def _check_published_cell(ctx: TrainContext) -> None:
    """UsageError unless the cell can run published modules: a known folder of its model, the model without
    BN, ImageNet-normalised data."""
    if ctx.model_args.get("bn", True) or ctx.spec.name not in PUBLISHED_LAYOUTS:
        raise UsageError(f"cnnsplitter.published needs simcnn:bn=false or rescnn:bn=false, not {ctx.spec.name} "
                         f"with {ctx.model_args or 'its defaults'}")
    chosen(Path(ctx.hparams.published), ctx.spec.name)
    mean, std = IMAGENET_NORM
    if not all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip((*ctx.data.mean, *ctx.data.std), (*mean, *std),
                                                                strict=True)):
        raise UsageError(f"published CNNSplitter models expect images normalised with ImageNet's mean {mean} and "
                         f"std {std}; {ctx.data.name} is normalised with mean {ctx.data.mean} here")


def _published_weights(folder: Path, model: nn.Module, model_name: str) -> nn.Module:
    """``model`` with the weights of the folder's ``entire_model.pth`` (read with ``weights_only``)."""
    path = folder / "entire_model.pth"
    mapping = Mapping(PUBLISHED_LAYOUTS[model_name].key_map(model, modular=False), model)
    mapping.rename(read_checkpoint(path))
    problems = mapping.problems()
    if problems:
        raise UsageError(f"{path} does not fit this cell's {model_name}: {'; '.join(problems)}")
    model.load_state_dict(mapping.tensors)
    return model


@hookimpl
def register_methods(register: Any) -> None:
    """CNNSplitter."""
    register(CNNSplitter())
