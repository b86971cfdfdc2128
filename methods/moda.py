"""MODA: modularizing while training by shaping the activations themselves (Ngo et al., ICSE 2026).

No masks: loss = CE + alpha * (1 - affinity) + beta * dispersion + gamma * compactness over the
activations of every masked unit (``bench.modular.signals``: a conv channel's mean post-ReLU value
over its feature map). Per unit, each sample's activations are L2-normalised; affinity is the mean
cosine similarity of same-class pairs i < j, dispersion that of different-class pairs (MwT's
cohesion and coupling, over activations), compactness the mean activation; each averaged over
units. A class module keeps the units active for at least ``threshold`` of its samples, with a
floor (``floored_modules``). On ViTs, which its authors never ran, the units are the MLP neurons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.hookspecs import hookimpl
from bench.modular.activity import floored_modules
from bench.modular.extract import extract
from bench.modular.signals import UnitRecorder, activation_units
from bench.modular.similarity import cohesion_coupling_loss, unit_rate
from bench.protocol.method import Method, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ModuleSet, unit_kind


@dataclass
class MODAHparams:
    """MODA's weights as its README runs them (the argparse defaults, 0, train a standard model).

    alpha: weight of the affinity loss, 1 - mean same-class similarity.
    beta: weight of the dispersion loss, the mean different-class similarity.
    gamma: weight of the compactness loss, the mean activation.
    floor: share of each layer a class module keeps at least (``model_modularizer.py``: 0.005).
    """

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.3
    floor: float = field(default=0.005, metadata={"stage": "modularize"})

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.floor > 1:
            raise ValueError(f"floor is a share of a layer, at most 1, got {self.floor}")


def moda_loss(signals: list[torch.Tensor], labels: torch.Tensor,
              hparams: MODAHparams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """alpha * (1 - affinity) + beta * dispersion + gamma * compactness over (batch, units) activations."""
    affinity_loss, dispersion = cohesion_coupling_loss(signals, labels)
    compactness = torch.stack([s.float().abs().mean() for s in signals]).mean()
    loss = hparams.alpha * affinity_loss + hparams.beta * dispersion + hparams.gamma * compactness
    return loss, {"affinity_loss": affinity_loss.detach(), "dispersion_loss": dispersion.detach(),
                  "compactness_loss": compactness.detach(), "unit_rate": unit_rate(signals)}


class MODA(Method):
    """Activation-driven modular training; modules by per-class activation rate; physical extraction."""

    name = "moda"
    description = "MODA (ICSE'26): activations shaped by affinity/dispersion/compactness losses, no masks"
    Hparams = MODAHparams

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Task loss + MODA's loss on the activations the recorder keeps at each forward pass."""
        with UnitRecorder(activation_units(ctx.model)) as recorder:
            def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
                task, logs = ctx.task_loss(model, x, y)
                extra, extra_logs = moda_loss(recorder.last(), y, ctx.hparams)
                return task + extra, {**logs, **extra_logs}

            return TrainedModel(ctx.model, ctx.fit(ctx.model, loss_fn))

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """Per-class activation rates at the threshold, with the floor; units MODA does not shape stay whole."""
        stats = ctx.activity()
        shaped = [name for name, _ in activation_units(trained.model)]
        masks, topped_up = floored_modules(stats, ctx.threshold, ctx.hparams.floor, shaped)
        return ModuleSet(unit_kind(ctx.family), stats.layers, stats.sizes, masks, {"floor_topups": sum(topped_up)},
                         stats.frequencies().float())

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """The trained model with only the target module's units, physically removed."""
        return extract(trained.model, modules.target(classes))


@hookimpl
def register_methods(register: Any) -> None:
    """MODA."""
    register(MODA())
