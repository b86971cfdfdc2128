"""What every dataset loader does once its images are read: check options, normalisation, validation split."""

from __future__ import annotations

from typing import Any

import torch

from bench.data.tensors import DataBundle, TensorData, stratified_split
from bench.errors import UsageError

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


def make_bundle(
    name: str,
    class_names: list[str],
    train: TensorData,
    test: TensorData,
    val_fraction: float,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    augment: str,
) -> DataBundle:
    """Carve the validation split from ``train`` (the same split for every method and seed)."""
    rest, val = stratified_split(train, val_fraction, seed=0)
    return DataBundle(name, len(class_names), class_names, rest, val, test, mean, std, augment)


def reject_options(name: str, options: dict[str, Any], accepted: tuple[str, ...] = ()) -> None:
    """UsageError naming the options of dataset ``name`` that are not in ``accepted``."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"accepted: {', '.join(accepted)}" if accepted else "it takes none"
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for dataset {name} ({takes})")


def channel_stats(x: torch.Tensor) -> Stats:
    """Per-channel mean and std of uint8 images (N,3,H,W) scaled to [0, 1], accumulated in chunks."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for chunk in x.split(4096):
        values = chunk.double() / 255
        total += values.sum(dim=(0, 2, 3))
        squares += values.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
