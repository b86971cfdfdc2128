"""MwT: kernel-level modularizing while training (Qi et al., ICSE 2024).

Loss = CE + alpha * cohesion + beta * coupling, where per masked layer, with the masks
L2-normalised per sample and S their cosine similarities over pairs i < j, cohesion = 1 - mean S
over same-class pairs and coupling = mean S over different-class pairs, averaged over layers.
On ViTs it runs as the NeMo paper's Transformer baseline: the same neuron masks, this loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.hookspecs import hookimpl
from bench.models.spec import ModelSpec
from bench.modular.masked_method import MaskedHparams, MaskedMethod
from bench.modular.similarity import cohesion_coupling_loss


@dataclass
class MwTHparams(MaskedHparams):
    """MwT hyperparameters (plus ``mask_lr``, ``extraction`` and ``empty_layer``: ``MaskedHparams``).

    alpha: weight of the cohesion loss (paper: 0.5).
    beta: weight of the coupling loss (paper: 1.5 on CNNs; the NeMo authors' DeiT-S script: 0.5).
    """

    alpha: float = 0.5
    beta: float = 1.5

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("alpha", "beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")


class MwT(MaskedMethod):
    """Kernel-level MwT on CNNs; the NeMo paper's neuron-level MwT baseline on ViTs."""

    name = "mwt"
    description = "MwT (ICSE'24): masks trained with cosine cohesion/coupling losses"
    Hparams = MwTHparams

    def hparams(self, model: ModelSpec) -> MwTHparams:
        """alpha 0.5; beta 1.5 on CNNs, 0.5 on ViTs (the NeMo authors' baseline script)."""
        return MwTHparams(beta=1.5 if model.family == "cnn" else 0.5)

    def mask_loss(self, masks: list[torch.Tensor], labels: torch.Tensor, hparams: Any,
                  family: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """alpha * cohesion + beta * coupling."""
        cohesion, coupling = cohesion_coupling_loss(masks, labels)
        loss = hparams.alpha * cohesion + hparams.beta * coupling
        return loss, {"cohesion_loss": cohesion.detach(), "coupling_loss": coupling.detach()}


@hookimpl
def register_methods(register: Any) -> None:
    """MwT."""
    register(MwT())
