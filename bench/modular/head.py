"""The task head a reused module gets before fine-tuning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class HeadedModule(nn.Module):
    """A reused CNN module with its task head: ReLU + Linear(num_classes -> k) on the module's logits."""

    def __init__(self, module: nn.Module, num_classes: int, num_outputs: int) -> None:
        super().__init__()
        self.module = module
        self.head = nn.Linear(num_classes, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.module(x)))


def attach_head(module: nn.Module, num_classes: int, num_outputs: int) -> nn.Module:
    """Give a composed module a fresh head with ``num_outputs`` classes.

    Models that define ``replace_head`` swap their own head (ViTs: a new Linear on the class token;
    'paper' mode ViT modules: ReLU + Linear, as the NeMo authors');
    any other module gets ReLU + Linear over its logits (MwT's CNN module head).
    """
    if hasattr(module, "replace_head"):
        module.replace_head(num_outputs)
        return module
    device = next(module.parameters()).device
    return HeadedModule(module, num_classes, num_outputs).to(device)
