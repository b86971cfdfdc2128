"""Class modules of several models on one scale: min-max normalised votes, and per class the best module.

A module's vote for its class is its logit of that class; logits of different models are not on
one scale, so each is min-max normalised by the range it takes on held-out images of its class
(CNNSplitter's rule for patching). Composing across models then keeps, per class, the module of
the member that separates the class best on validation, and predicts the argmax of the votes.
"""

from __future__ import annotations

import torch


def minmax(outputs: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``outputs`` mapped so that ``low`` -> 0 and ``high`` -> 1 (a flat range only shifts them)."""
    span = high - low
    return (outputs - low) / (span if span > 0 else 1.0)


def normalised_votes(outputs: list[torch.Tensor], ranges: list[tuple[float, float]]) -> torch.Tensor:
    """(N, classes): column c is ``outputs[c]`` (N,), class c's module on N images, normalised by ``ranges[c]``."""
    return torch.stack([minmax(out.float(), low, high) for out, (low, high) in zip(outputs, ranges, strict=True)],
                       dim=1)


def best_members(scores: torch.Tensor) -> list[int]:
    """Per class, the member whose module scores highest: ``scores`` (members, classes); the first on ties."""
    best = scores.max(dim=0).values  # (classes,)
    return [int((scores[:, c] == best[c]).nonzero()[0]) for c in range(scores.shape[1])]
