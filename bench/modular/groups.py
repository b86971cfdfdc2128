"""Optimizer parameter groups for training with mask generators: where weight decay applies.

Weight decay pulls a parameter towards 0. On a mask generator that shuts its masks (their biases
start at 1.0 so that masks start open), and on biases and normalisation weights it only fights
the fit; so only the model's other weights take the recipe's decay (AdamW or SGD alike).
"""

from __future__ import annotations

from torch import nn

from bench.modular.masking import generator_parameters

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def undecayed_ids(model: nn.Module) -> set[int]:
    """``id`` of every bias and every parameter of a normalisation layer of ``model``."""
    ids = {id(p) for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"}
    for module in model.modules():
        if isinstance(module, NORM_TYPES):
            ids.update(id(p) for p in module.parameters(recurse=False))
    return ids


def modular_groups(model: nn.Module, mask_lr: float) -> list[dict]:
    """Parameter groups: model weights (the recipe's lr and decay), model biases and normalisation
    weights (no decay), mask generators (``mask_lr``, no decay); empty groups are left out."""
    model_params, generator_params = generator_parameters(model)
    no_decay = undecayed_ids(model)
    groups = [
        {"params": [p for p in model_params if id(p) not in no_decay]},
        {"params": [p for p in model_params if id(p) in no_decay], "weight_decay": 0.0},
        {"params": generator_params, "lr": mask_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
