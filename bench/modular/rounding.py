"""Rounding a module's kept units per layer up to a multiple (vector and tensor-core friendly widths).

A module whose layers keep 27 or 61 channels runs slower per multiply-add than one keeping 32
or 64: convolution and matrix kernels work in blocks of 8 (GPU tensor cores) or 16 (AVX-512
float32) channels and pad or fall back to slower paths otherwise. Rounding adds, in each layer,
the units the task's samples use most often among those the module left out, until the kept
count is a multiple of ``multiple`` (or the whole layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.protocol.modules import ModuleSet


def rounded_layer(keep: torch.Tensor, frequency: torch.Tensor, multiple: int) -> torch.Tensor:
    """``keep`` (units,) bool plus the most frequent dropped units, up to a multiple of ``multiple`` kept.

    Ties in ``frequency`` go to the lower unit index. The count never exceeds the layer's size.
    """
    kept = int(keep.sum())
    target = min(len(keep), -(-kept // multiple) * multiple)
    if target == kept:
        return keep.clone()
    score = torch.where(keep, torch.tensor(float("inf"), dtype=torch.double), frequency.double())
    order = torch.sort(-score, stable=True).indices  # kept units first, then by decreasing frequency
    rounded = torch.zeros_like(keep)
    rounded[order[:target]] = True
    return rounded


def rounded_keep(keep: torch.Tensor, frequency: torch.Tensor, sizes: Sequence[int], multiple: int) -> torch.Tensor:
    """A (units,) keep mask over layers of ``sizes`` (concatenated), each layer rounded by ``rounded_layer``.

    ``multiple`` 1 returns ``keep`` unchanged (a copy).
    """
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, not {multiple}")
    if multiple == 1:
        return keep.clone()
    parts = zip(torch.split(keep, list(sizes)), torch.split(frequency, list(sizes)), strict=True)
    return torch.cat([rounded_layer(k, f, multiple) for k, f in parts])


def task_keep(modules: ModuleSet, classes: Sequence[int], multiple: int = 1) -> torch.Tensor:
    """The (units,) mask a task's module keeps: the union of its class modules, each layer rounded up
    to a multiple of ``multiple`` by the units the task's classes use most (their mean per-class
    frequency; ``multiple`` 1 keeps the union as it is)."""
    keep = modules.target_mask(classes)
    if multiple == 1:
        return keep
    if modules.frequencies is None:
        raise ValueError("rounding a module to a channel multiple needs the modules' per-class frequencies")
    return rounded_keep(keep, modules.frequencies[list(classes)].mean(dim=0), modules.sizes, multiple)
