"""Real-valued mask scores binarised in the forward pass, with a straight-through backward pass.

GradSplitter (``MySign``, ``src/splitters/*.py``) and SeaM (``Binarization``,
``src/binary_class/models/nn_layers.py``) search their masks the same way: the forward pass uses
``scores > 0`` as a 0/1 mask; the backward pass treats the step as the identity and hands the
incoming gradient to the scores clipped to [-1, 1] (``hardtanh``). A score starts at 1 (kept) and is
dropped once gradient steps push it to 0 or below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _Binarize(torch.autograd.Function):
    """forward: 1 where ``scores > 0``, else 0 (the scores' dtype); backward: hardtanh of the gradient."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, scores: torch.Tensor) -> torch.Tensor:
        return (scores > 0).to(scores.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(grad)


def binarize(scores: torch.Tensor) -> torch.Tensor:
    """``scores > 0`` as 0/1 values of the scores' shape and dtype; the gradient passes straight through,
    clipped to [-1, 1]."""
    return _Binarize.apply(scores)


def kept_share(scores: list[torch.Tensor]) -> torch.Tensor:
    """The share of kept entries over every score tensor together (a 0-dim tensor, differentiable through
    ``binarize``): SeaM's weight ratio, GradSplitter's mean kept kernels."""
    flat = torch.cat([binarize(s).flatten() for s in scores])  # (all entries,)
    return flat.mean()
