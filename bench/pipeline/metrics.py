"""Metrics: accuracy, modularity (cohesion, coupling, retention), size, FLOPs and latency.

Pure functions, tensors in and numbers out; the runner decides when to call them.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from bench.pipeline.env import synchronize
from bench.protocol.modules import ActivityStats, ModuleSet

# fvcore reports these as unsupported but they are elementwise or data movement: no multiply-adds.
COMPUTE_OP_MARKERS = ("conv", "mm", "mv", "matmul", "linear", "einsum", "attention", "dot", "bilinear", "rnn",
                      "lstm", "gru")


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             columns: Sequence[int] | None = None) -> float:
    """Top-1 accuracy of ``model`` (eval mode); with ``columns``, argmax over those logits only.

    ``columns`` is how the standard model is scored on a sub-task: its logits restricted to the
    target classes, labels relabelled 0..k-1 in the same order.
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in batches:
        logits = model(x)
        if columns is not None:
            logits = logits[:, list(columns)]
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / max(total, 1)


def mean_pairwise_jaccard(sets: torch.Tensor) -> float:
    """Mean Jaccard index over all pairs of distinct rows of a (n, units) bool matrix.

    intersection = A·Aᵀ and union = |a| + |b| − intersection: one matrix product, never an
    n x n x units tensor. Two empty sets count as identical (J = 1). NaN for fewer than 2 rows.
    """
    n = sets.shape[0]
    if n < 2:
        return math.nan
    a = sets.double()
    inter = a @ a.T  # (n, n)
    size = a.sum(1)
    union = size[:, None] + size[None, :] - inter
    jac = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    off_diagonal = jac.sum() - jac.diagonal().sum()
    return float(off_diagonal / (n * (n - 1)))


def cohesion(stats: ActivityStats, modules: ModuleSet) -> float:
    """Mean over classes of the mean Jaccard between same-class samples' active units, within the class module."""
    values = []
    for c in range(modules.masks.shape[0]):
        active = stats.samples[stats.sample_labels == c] & modules.masks[c]
        value = mean_pairwise_jaccard(active)
        if not math.isnan(value):
            values.append(value)
    return statistics.fmean(values) if values else math.nan


def coupling(modules: ModuleSet) -> float:
    """Mean Jaccard between pairs of class module masks."""
    return mean_pairwise_jaccard(modules.masks)


def retention(mask: torch.Tensor) -> float:
    """Share of units kept by a (units,) or (modules, units) mask (mean over modules)."""
    return float(mask.double().mean())


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_linear_params(model: nn.Module) -> int:
    """Parameters (weights and biases) of the ``nn.Linear`` layers alone: how the NeMo authors count a
    ViT's weights (``calculate_param``, modules_arch/vit_module_HF.py), for a like-for-like weight retention."""
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False))


def _sdpa_flops(inputs: list, outputs: list) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = math.prod(q[:-2])
    length, depth, keys, value_depth = q[-2], q[-1], k[-2], v[-1]
    return batch * length * keys * (depth + value_depth)  # q·kᵀ and attn·v multiply-adds


def flops_by_operator(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """Multiply-adds of one forward pass per operator (fvcore, attention included).

    Raises RuntimeError when fvcore meets a compute op (conv, matmul, attention...) it cannot
    count, instead of silently under-reporting.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, torch.zeros(input_shape, device=device))
        analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flops)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        counts = {op: int(n) for op, n in analysis.by_operator().items()}
        missed = [op for op in analysis.unsupported_ops() if any(m in op for m in COMPUTE_OP_MARKERS)]
    model.train(was_training)
    if missed:
        raise RuntimeError(f"FLOP count incomplete: fvcore cannot count {', '.join(sorted(missed))}")
    return counts


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-adds of one forward pass (fvcore, attention included; see ``flops_by_operator``)."""
    return sum(flops_by_operator(model, input_shape).values())


def _timed(model: nn.Module, x: torch.Tensor, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    model(x)
    sync()
    return time.perf_counter() - start


@torch.no_grad()
def latency_ratio(module: nn.Module, reference: nn.Module, batch_size: int = 32, warmup: int = 3,
                  iters: int = 10) -> float:
    """Median forward time of ``module`` over that of ``reference`` on a (batch_size, 3, 32, 32) batch.

    The two are timed alternately, after warm-up, so that a slow moment of the machine affects both;
    GPU work (CUDA, MPS) is synchronised around every timed pass.
    """
    device = next(module.parameters()).device
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    sync = functools.partial(synchronize, device)
    modes = module.training, reference.training
    module.eval()
    reference.eval()
    for _ in range(warmup):
        module(x)
        reference(x)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(iters):
        times[0].append(_timed(module, x, sync))
        times[1].append(_timed(reference, x, sync))
    module.train(modes[0])
    reference.train(modes[1])
    return statistics.median(times[0]) / statistics.median(times[1])
