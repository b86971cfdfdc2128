"""Per-class kernel importance (CNNSplitter): the mean L1 of each kernel's post-ReLU feature map.

The mean runs over the held-out samples of a class that the model predicts as that class with
softmax confidence >= ``confidence``, as in the authors' analyzer; a class without such a sample
falls back to all its samples, and a class without samples gets zeros (its ordering is then the
kernels' own order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _ClassSums:
    """Per-class sums of per-sample rows, one (classes, channels) tensor per probe, and sample counts."""

    def __init__(self, num_classes: int, probes: int) -> None:
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.sums: list[torch.Tensor | float] = [0.0] * probes

    def add(self, weights: torch.Tensor, rows: Sequence[torch.Tensor]) -> None:
        """``weights`` (batch, classes) 0/1 says which class a sample adds to; ``rows`` (batch, channels)."""
        self.counts += weights.sum(0).double().cpu()
        self.sums = [s + (weights.T @ r).double().cpu() for s, r in zip(self.sums, rows, strict=True)]

    def means(self) -> list[torch.Tensor]:
        return [s / self.counts.clamp(min=1)[:, None] for s in self.sums]


@torch.no_grad()
def kernel_importance(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                      probes: Sequence[str], confidence: float = 0.9) -> list[torch.Tensor]:
    """One (num_classes, channels) float64 tensor per probe module: its mean post-ReLU L1 per class."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}

    def record(name: str):
        return lambda _module, _inputs, out: seen.__setitem__(name, torch.relu(out.float()).sum(dim=(2, 3)))

    hooks = [modules[name].register_forward_hook(record(name)) for name in dict.fromkeys(probes)]
    sure, every = _ClassSums(num_classes, len(probes)), _ClassSums(num_classes, len(probes))
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            onehot = F.one_hot(y, num_classes).float()  # (batch, classes)
            confident = torch.softmax(model(x).float(), dim=1).gather(1, y[:, None]) >= confidence
            rows = [seen[p] for p in probes]
            sure.add(onehot * confident, rows)
            every.add(onehot, rows)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    use_sure = (sure.counts > 0)[:, None]
    return [torch.where(use_sure, s, e) for s, e in zip(sure.means(), every.means(), strict=True)]


def importance_orders(importance: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, (classes, channels) kernel indices by decreasing importance (stable: ties keep index order)."""
    return [torch.sort(layer, dim=1, descending=True, stable=True).indices for layer in importance]
