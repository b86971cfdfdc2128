"""Metrics: accuracy, modularity (cohesion, coupling, retention), size, FLOPs and latency.

Pure functions, tensors in and numbers out; the runner decides when to call them. Latency lives
in ``bench.pipeline.latency`` and is re-exported here.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from bench.modular.weight_masks import is_sparse, kept_parameters, layer_parameters, sparse_flops
from bench.pipeline.latency import latency_ratios as latency_ratios
from bench.protocol.modules import ActivityStats, ModuleSet

# fvcore reports these as unsupported but they are elementwise or data movement: no multiply-adds.
COMPUTE_OP_MARKERS = ("conv", "mm", "mv", "matmul", "linear", "einsum", "attention", "dot", "bilinear", "rnn",
                      "lstm", "gru")


def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             columns: Sequence[int] | None = None) -> float:
    """Top-1 accuracy of ``model`` (eval mode); with ``columns``, argmax over those logits only.

    ``columns`` is how the standard model is scored on a sub-task: its logits restricted to the
    target classes, labels relabelled 0..k-1 in the same order.
    """
    picked = slice(None) if columns is None else list(columns)
    return _share_correct(model, batches, lambda logits: logits[:, picked].argmax(1))


def one_vs_rest_accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                         target: int) -> float:
    """Accuracy of ``model`` (eval mode) on a one-vs-rest task (label 0: class ``target``, 1: another): it
    answers 0 when its argmax over every class is ``target`` (how SeaM scores the original model there)."""
    return _share_correct(model, batches, lambda logits: (logits.argmax(1) != target).long())


@torch.no_grad()
def _share_correct(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   predict: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """The share of samples whose ``predict(logits)`` equals their label (``model`` in eval mode meanwhile)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in batches:
        correct += int((predict(model(x)) == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / max(total, 1)


@torch.no_grad()
def outputs_of(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
               column: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s logits (eval mode) over ``batches`` on the CPU, (N, classes), or only ``column``'s, (N,);
    and the labels, (N,)."""
    was_training = model.training
    model.eval()
    outputs, labels = [], []
    for x, y in batches:
        logits = model(x).float()
        outputs.append((logits if column is None else logits[:, column]).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)


def class_scores(predictions: torch.Tensor, labels: torch.Tensor, target: int) -> dict[str, float]:
    """Precision, recall and F1 of class ``target`` (one against the rest); 0 where undefined (nothing
    predicted as the class, or no image of it), as scikit-learn's default."""
    predicted, actual = predictions == target, labels == target
    hits = int((predicted & actual).sum())
    precision = hits / int(predicted.sum()) if predicted.any() else 0.0
    recall = hits / int(actual.sum()) if actual.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def roc_auc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` (N,) ranking the ``positives`` (N,) bool above the rest: the
    chance that a random positive outscores a random negative, ties counting half; NaN without both."""
    pos, neg = scores[positives].double(), scores[~positives].double()
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    above = (pos[:, None] > neg[None, :]).double().mean()  # (positives, negatives) compared pairwise
    ties = (pos[:, None] == neg[None, :]).double().mean()
    return float(above + 0.5 * ties)


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
    """Number of parameters; a weight under an unstructured mask (``bench.modular.weight_masks``) counts its
    kept entries only."""
    return kept_parameters(model)


def count_linear_params(model: nn.Module) -> int:
    """Parameters (weights and biases) of the ``nn.Linear`` layers alone: how the NeMo authors count a
    ViT's weights (``calculate_param``, modules_arch/vit_module_HF.py), for a like-for-like weight retention.
    A masked weight counts its kept entries only."""
    return sum(layer_parameters(m) for m in model.modules() if isinstance(m, nn.Linear))


def _baddbmm_flops(inputs: list, outputs: list) -> int:
    """``input + batch1 @ batch2`` (how a batched Linear may be traced on a GPU): the product's multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    batch, rows, inner = get_shape(inputs[1])
    return batch * rows * inner * get_shape(inputs[2])[-1]


def _sdpa_flops(inputs: list, outputs: list) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = math.prod(q[:-2])
    length, depth, keys, value_depth = q[-2], q[-1], k[-2], v[-1]
    return batch * length * keys * (depth + value_depth)  # q·kᵀ and attn·v multiply-adds


def flop_analysis(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> tuple[dict[str, int],
                                                                                             dict[str, int]]:
    """Multiply-adds of one forward pass (fvcore, attention included), per operator and per module name.

    The input takes the model's dtype and autocast is off while counting: the count does not
    depend on the precision the model runs in. Raises RuntimeError when fvcore meets a compute op
    (conv, matmul, attention...) it cannot count, instead of silently under-reporting.
    """
    reference = next(model.parameters())
    was_training = model.training
    model.eval()
    with warnings.catch_warnings(), torch.autocast(reference.device.type, enabled=False):
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        x = torch.zeros(input_shape, device=reference.device, dtype=reference.dtype)
        analysis = FlopCountAnalysis(model, x)
        analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flops)
        analysis.set_op_handle("aten::baddbmm", _baddbmm_flops)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        counts = {op: int(n) for op, n in analysis.by_operator().items()}
        modules = {name: int(n) for name, n in analysis.by_module().items()}
        missed = [op for op in analysis.unsupported_ops() if any(m in op for m in COMPUTE_OP_MARKERS)]
    model.train(was_training)
    if missed:
        raise RuntimeError(f"FLOP count incomplete: fvcore cannot count {', '.join(sorted(missed))}")
    return counts, modules


def flops_by_operator(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """Multiply-adds of one forward pass per operator (dense; see ``flop_analysis``)."""
    return flop_analysis(model, input_shape)[0]


def flop_counts(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> tuple[int, int]:
    """(multiply-adds, dense multiply-adds) of one forward pass: equal, except for a module with unstructured
    weight masks, whose first count leaves out the multiply-adds of its dropped weights."""
    operators, modules = flop_analysis(model, input_shape)
    dense = sum(operators.values())
    return (sparse_flops(dense, modules, model) if is_sparse(model) else dense), dense


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-adds of one forward pass (fvcore, attention included; a dropped weight multiplies nothing)."""
    return flop_counts(model, input_shape)[0]


def sparsity_figures(model: nn.Module, counts: tuple[int, int], reference_flops: int) -> dict[str, object]:
    """For a module with unstructured weight masks: its label and dense FLOPs beside the sparse ones (empty
    otherwise). Such a module has its model's shape, so dense hardware runs it at the dense cost."""
    if not is_sparse(model):
        return {}
    return {"sparsity": "unstructured", "flops_dense": counts[1], "flops_ratio_dense": counts[1] / reference_flops}
