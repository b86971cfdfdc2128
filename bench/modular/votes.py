"""Class modules on one scale: a module's vote for its class is its logit of that class, put on a scale
that logits of different models share.

Composing across models standardises each vote by the mean and deviation the logit takes on the
validation images (all of them): measured on ``digits``, it keeps a model's own argmax where the
min-max rule of patching (``bench.modular.patching.minmax``: the range on the images of the class)
lost up to 10 points.
Per class, the member whose module separates the class best on validation is kept
(``best_members``), and the composition predicts the argmax of the votes.
"""

from __future__ import annotations

import torch


def standardised_votes(outputs: list[torch.Tensor], references: list[torch.Tensor]) -> torch.Tensor:
    """(N, classes): column c is ``outputs[c]`` (N,), class c's module on N images, standardised by the mean and
    standard deviation of ``references[c]``, the same module's logit on the validation images."""
    return torch.stack([(out.float() - ref.float().mean()) / ref.float().std().clamp(min=1e-6)
                        for out, ref in zip(outputs, references, strict=True)], dim=1)


def best_members(scores: torch.Tensor) -> list[int]:
    """Per class, the member whose module scores highest: ``scores`` (members, classes); the first on ties."""
    best = scores.max(dim=0).values  # (classes,)
    return [int((scores[:, c] == best[c]).nonzero()[0]) for c in range(scores.shape[1])]
