"""CNNSplitter's published modules, read safely into the zoo's no-BN SimCNN and ResCNN.

A published folder (``simcnn_cifar10``, ``rescnn_svhn``, ...) holds ``entire_model.pth`` (the
trained model's state dict, in the layout ``bench.importers`` maps onto the zoo),
``kernel_importance/avg_L1.pkl`` (nested list [class][conv layer][kernel] of floats) and
``ga/gen_<G>_exp_<c>_pop.pkl`` (class c's population, a 0/1 numpy array, one row a chromosome).
The generation and the row per class that the authors chose come from their configs (``CHOSEN``);
``published_keep`` decodes those chromosomes into the modules' kept kernels.

The pickles are untrusted: ``read_pickle`` admits only what those files need (lists, floats and
plain numpy arrays), so a payload that would run code fails to load and never runs; every file is
checked for shapes and ranges, and any problem is one line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.data.pickles import load_arrays
from bench.errors import BenchError, UsageError
from bench.models.layers import ConvUnit, units
from bench.modular.importance import importance_orders
from bench.modular.kernel_groups import GeneLayout

CHOSEN = {  # folder: (generation, population row per class), from the authors' configs
    "simcnn_cifar10": (123, (0, 1, 0, 0, 0, 0, 0, 110, 2, 9)),
    "rescnn_cifar10": (185, (0,) * 10),
    "simcnn_svhn": (79, (2, 2, 3, 0, 2, 0, 0, 2, 6, 2)),
    "rescnn_svhn": (107, (0, 0, 0, 22, 0, 0, 0, 0, 0, 0)),
}
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # what the published models were trained with


def read_pickle(path: Path) -> Any:
    """A CNNSplitter pickle, built by ``bench.data.pickles.ArraysOnly``; BenchError naming ``path`` otherwise."""
    try:
        return load_arrays(path)
    except OSError as exc:
        raise BenchError(f"{path}: cannot be read ({exc.strerror})") from None
    except Exception as exc:  # truncated, foreign or hostile content: all one line
        raise BenchError(f"{path}: not a CNNSplitter file of lists and numpy arrays ({exc})") from None


def numbers(value: Any, path: Path, what: str) -> torch.Tensor:
    """``value`` (nested lists or a numeric array) as a float64 tensor; BenchError naming ``path`` otherwise."""
    if isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
        raise BenchError(f"{path}: {what} has numpy dtype {value.dtype}, not numbers")
    try:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise BenchError(f"{path}: {what} is not a regular array of numbers ({exc})") from None
    if not torch.isfinite(tensor).all():
        raise BenchError(f"{path}: {what} holds non-finite values")
    return tensor


def chosen(folder: Path, model_name: str) -> tuple[int, tuple[int, ...]]:
    """(generation, row per class) the authors chose for ``folder``; UsageError for a folder of another model."""
    name = folder.name
    if name not in CHOSEN:
        raise UsageError(f"{folder}: unknown published folder '{name}' (expected one of {', '.join(CHOSEN)})")
    if not name.startswith(f"{model_name}_"):
        raise UsageError(f"{folder} holds {name.split('_')[0]} modules; this cell's model is {model_name}")
    return CHOSEN[name]


def published_keep(folder: Path, model: nn.Module, model_name: str, num_classes: int) -> dict[str, torch.Tensor]:
    """The published modules' kept kernels: every conv unit's name -> (classes, kernels) bool, in model order."""
    generation, rows = chosen(folder, model_name)
    if len(rows) != num_classes:
        raise UsageError(f"{folder}: published modules cover {len(rows)} classes; this data set has {num_classes}")
    convs = [name for name, unit in units(model) if isinstance(unit, ConvUnit)]
    layout = GeneLayout.from_model(model, convs)
    importance = _importance(folder / "kernel_importance" / "avg_L1.pkl", layout.unit_sizes, num_classes)
    genes = torch.stack([_chromosome(folder / "ga" / f"gen_{generation}_exp_{c}_pop.pkl", row, layout.genes)
                         for c, row in enumerate(rows)])  # (classes, genes)
    by_layer = [importance[convs.index(layer.units[-1])] for layer in layout.layers]
    keep = layout.decode(genes[:, None, :], importance_orders(by_layer))[:, 0]  # (classes, units)
    return dict(zip(convs, torch.split(keep, layout.unit_sizes, dim=1), strict=True))


def _importance(path: Path, sizes: list[int], num_classes: int) -> list[torch.Tensor]:
    """Per conv layer, the (classes, kernels) float64 importance of ``avg_L1.pkl``, checked: all >= 0."""
    value = read_pickle(path)
    if not isinstance(value, list) or len(value) != num_classes:
        raise BenchError(f"{path}: expected a list of {num_classes} classes")
    if any(not isinstance(layers, list) or len(layers) != len(sizes) for layers in value):
        raise BenchError(f"{path}: every class should list {len(sizes)} conv layers")
    result = []
    for i, size in enumerate(sizes):
        layer = numbers([layers[i] for layers in value], path, f"conv layer {i}'s importance")
        if tuple(layer.shape) != (num_classes, size):
            raise BenchError(f"{path}: conv layer {i}'s importance has shape {tuple(layer.shape)}; "
                             f"expected ({num_classes}, {size})")
        if (layer < 0).any():
            raise BenchError(f"{path}: conv layer {i}'s importance is negative somewhere (an L1 norm never is)")
        result.append(layer)
    return result


def _chromosome(path: Path, row: int, genes: int) -> torch.Tensor:
    """Row ``row`` of a population file as a (genes,) bool tensor, after checking shape and 0/1 values."""
    population = read_pickle(path)
    if not isinstance(population, np.ndarray):
        raise BenchError(f"{path}: expected a numpy array, found {type(population).__name__}")
    table = numbers(population, path, "the population")
    if table.dim() != 2 or table.shape[1] != genes or table.shape[0] <= row:
        raise BenchError(f"{path}: population of shape {tuple(table.shape)}; expected at least {row + 1} rows "
                         f"of {genes} genes")
    if not ((table == 0) | (table == 1)).all():
        raise BenchError(f"{path}: genes must be 0 or 1")
    return table[row].bool()
