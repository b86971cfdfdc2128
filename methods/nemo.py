"""NeMo: neuron-level modularizing while training with a contrastive mask loss (arXiv 2508.11348).

Loss = task loss + alpha * L_con. Per masked layer, Z = row-normalised masks, S = Z Zᵀ (diagonal
included), P_ij = 1 when labels match; pos_i = Σ_j exp(S_ij P_ij / τ), neg_i = Σ_j exp(S_ij (1 − P_ij)
/ τ), both over all j (masked-out entries add exp(0) = 1, as the authors' code does);
L_i = −log((pos_i + 1e-8) / (pos_i + neg_i + 1e-8)), mean over i, then over layers. On CNNs the
first masked layer's mask counts as all ones in the loss (only in the loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.hookspecs import hookimpl
from bench.models.spec import ModelSpec
from bench.modular.masked_method import MaskedHparams, MaskedMethod
from bench.modular.similarity import mask_similarities

EPS = 1e-8
# The authors' alphas: ViT-s 0.06-0.15, DeiT-s 0.08-0.1, ResNet18 1.1, SimCNN 1.3 (sweeps 1.0-1.8).
DEFAULT_ALPHA = {"vit": 0.1, "simcnn": 1.3, "resnet18": 1.1}


@dataclass
class NeMoHparams(MaskedHparams):
    """NeMo hyperparameters (plus ``mask_lr``, ``extraction`` and ``empty_layer``: ``MaskedHparams``).

    alpha: weight of the contrastive mask loss (default per model: ViTs 0.1, SimCNN 1.3,
    ResNet18 1.1, other CNNs 1.0).
    tau: temperature of the contrastive loss (0.2 in every script of the authors).
    """

    alpha: float = 1.0
    tau: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha < 0:
            raise ValueError(f"alpha must be at least 0, got {self.alpha}")
        if self.tau <= 0:
            raise ValueError(f"tau must be greater than 0, got {self.tau}")


def contrastive_mask_loss(masks: list[torch.Tensor], labels: torch.Tensor, tau: float) -> torch.Tensor:
    """NeMo's L_con averaged over layers; masks are (batch, units) each."""
    positive = (labels[:, None] == labels[None, :]).float()  # (batch, batch), diagonal included
    split = torch.stack([positive, 1 - positive])[:, None]  # (2, 1, batch, batch): P, then 1 - P
    sim = mask_similarities(masks)  # (layers, batch, batch)
    sums = torch.exp(sim * split / tau).sum(dim=3)  # (2, layers, batch): pos_i, neg_i of every layer
    pos, pos_and_neg = sums[0], sums.sum(dim=0)
    return -torch.log((pos + EPS) / (pos_and_neg + EPS)).mean()


class NeMo(MaskedMethod):
    """Neuron-level MwT for Transformers (and kernel-level on CNNs) with a contrastive mask loss."""

    name = "nemo"
    description = "NeMo: neuron-level masks trained with a contrastive loss (ViTs and CNNs)"
    Hparams = NeMoHparams

    def hparams(self, model: ModelSpec) -> NeMoHparams:
        """The authors' alpha for the model."""
        alpha = DEFAULT_ALPHA["vit"] if model.family == "vit" else DEFAULT_ALPHA.get(model.name, 1.0)
        return NeMoHparams(alpha=alpha)

    def mask_loss(self, masks: list[torch.Tensor], labels: torch.Tensor, hparams: Any,
                  family: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """alpha * L_con (CNNs: the first masked layer's mask taken as ones)."""
        if family == "cnn" and masks:
            masks = [torch.ones_like(masks[0]), *masks[1:]]
        loss = contrastive_mask_loss(masks, labels, hparams.tau)
        return hparams.alpha * loss, {"contrastive_loss": loss.detach()}


@hookimpl
def register_methods(register: Any) -> None:
    """NeMo."""
    register(NeMo())
