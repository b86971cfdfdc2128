"""Re-estimating the BatchNorm statistics of a pruned module on unlabelled images.

A module cut from a BatchNorm network keeps the running means and variances the full network
saw; with kernels removed, the inputs of the later BatchNorms shift and their statistics no longer
fit (a pruned SimCNN with BN can answer the same class for every image). Re-estimating them from
forward passes over training images (no labels, no gradient, no weight changes) restores them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(module: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Replace every BatchNorm's running statistics by their average over ``batches``; returns how many
    BatchNorm layers were re-estimated (0: nothing to do, the module is untouched)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    saved = [(m, m.momentum) for m in norms]
    was_training = module.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch seen
    module.train()
    try:
        for x, _ in batches:
            module(x)
    finally:
        for norm, momentum in saved:
            norm.momentum = momentum
        module.train(was_training)
    return len(norms)
