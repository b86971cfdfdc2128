"""Patching a weak model with a strong model's class module: the two strategies of the papers.

``replace`` (CNNSplitter, GradSplitter): the weak model's outputs through a softmax, the module's
output min-max normalised by the range it takes on held-out images of its class, and the class's
column replaced by it. ``calibrate`` (MODA, ``exp_repair/``): both models frozen, the weak model's
outputs without the class's column joined with the module's output, and a linear layer over the
joint vector trained on labelled images (on standardised inputs: see ``fit_calibration``). Pure
functions on output tensors: the models are run once by the caller.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CALIBRATION_MOMENTUM = 0.9  # MODA's trainer: SGD, Nesterov momentum 0.9, cosine over the epochs
CALIBRATION_INIT_STD = 0.01  # MODA's calibration layer: weights N(0, 0.01), bias 0
CALIBRATION_INPUTS = "standardised"  # what the layer trains on (a change recomputes the patched classes)


def minmax(outputs: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``outputs`` mapped so that ``low`` -> 0 and ``high`` -> 1 (a flat range only shifts them)."""
    span = high - low
    return (outputs - low) / (span if span > 0 else 1.0)


def replace_column(weak_logits: torch.Tensor, module_output: torch.Tensor, column: int, low: float,
                   high: float) -> torch.Tensor:
    """CNNSplitter's patch: softmax(weak) with ``column`` replaced by the min-max normalised module output.

    ``weak_logits`` (N, classes), ``module_output`` (N,): the module's logit of its class.
    """
    patched = weak_logits.float().softmax(dim=1)  # (N, classes)
    patched[:, column] = minmax(module_output.float(), low, high)
    return patched


def joint_outputs(weak_logits: torch.Tensor, module_output: torch.Tensor, column: int) -> torch.Tensor:
    """MODA's calibration input: the weak logits without ``column``, then the module's output: (N, classes)."""
    keep = [c for c in range(weak_logits.shape[1]) if c != column]
    return torch.cat([weak_logits[:, keep].float(), module_output.float()[:, None]], dim=1)


def fit_calibration(joint: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float, batch_size: int,
                    seed: int) -> nn.Linear:
    """A linear layer (classes -> classes) over ``joint`` outputs, trained with cross-entropy (MODA).

    SGD with Nesterov momentum 0.9, cosine annealing over the steps of ``epochs``, shuffled batches
    drawn from ``seed``: the same inputs give the same layer. It trains on the joint outputs
    standardised per column (their mean and deviation on ``joint``), folded into the returned
    layer, which takes the raw outputs: the same linear function class as MODA's, but a module
    whose logit is ten times the weak model's scale no longer throws SGD off.
    """
    mean, std = joint.mean(dim=0), joint.std(dim=0).clamp(min=1e-6)  # (classes,) each
    layer = _trained_layer((joint - mean) / std, labels, epochs, lr, batch_size, seed)
    with torch.no_grad():  # layer(z) with z = (x - mean) / std, as a layer of x
        layer.bias -= layer.weight @ (mean / std)
        layer.weight /= std
    return layer.eval().requires_grad_(False)


def _trained_layer(inputs: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float, batch_size: int,
                   seed: int) -> nn.Linear:
    generator = torch.Generator().manual_seed(seed)
    width = inputs.shape[1]
    layer = nn.Linear(width, width).to(inputs.device)
    with torch.no_grad():
        layer.weight.normal_(0, CALIBRATION_INIT_STD, generator=generator)
        layer.bias.zero_()
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=CALIBRATION_MOMENTUM, nesterov=True)
    steps = epochs * math.ceil(len(labels) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator).to(inputs.device)
        for start in range(0, len(labels), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(layer(inputs[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return layer
