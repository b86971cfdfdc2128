"""CNNSplitter's search space: each layer's kernels ordered by importance, cut into groups, one gene a group.

A *gene layer* is one conv unit, or several whose outputs a residual join adds channel by channel
(ResCNN's pairs, a ResNet stage's chain of blocks): they keep the same kernels, so they share one
importance ordering and one set of genes. Its kernels, sorted by a class's importance (stable,
descending), are cut into contiguous groups as ``numpy.array_split`` cuts them (10 groups under 256
kernels, else 100); a chromosome holds one bit per group and keeps the kernels of its 1-groups.
Gene layers follow the model's order of their last unit, which reproduces CNNSplitter's own
chromosome layout (ResCNN: conv0, conv2, conv1+conv3, conv4, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bench.models.layers import ConvUnit, Residual, units

SMALL_GROUPS, LARGE_GROUPS, LARGE_LAYER = 10, 100, 256


@dataclass(frozen=True)
class GeneLayer:
    """Conv units sharing one gene set; ``probe`` names the module whose output measures their kernels."""

    units: tuple[str, ...]
    probe: str
    size: int  # kernels of each unit
    groups: int  # genes

    def group_of_rank(self) -> torch.Tensor:
        """(size,) long: the group of each importance rank (contiguous, the first groups one larger)."""
        base, extra = divmod(self.size, self.groups)
        lengths = torch.tensor([base + 1] * extra + [base] * (self.groups - extra))
        return torch.repeat_interleave(torch.arange(self.groups), lengths)


class _Ties:
    """Union-find over conv units joined by residual additions, remembering each set's last join."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.probe: dict[str, str] = {}

    def add(self, name: str) -> str:
        self.parent[name] = self.probe[name] = name
        return name

    def find(self, name: str) -> str:
        while self.parent[name] != name:
            name = self.parent[name]
        return name

    def join(self, a: str, b: str, probe: str) -> str:
        root_a, root_b = self.find(a), self.find(b)
        self.parent[root_b] = root_a
        self.probe[root_a] = probe
        return root_a

    def walk(self, seq: nn.Sequential, prefix: str, current: str | None) -> str | None:
        """Follow ``seq``; returns the set whose channels the sequence outputs (None: the input image)."""
        for name, layer in seq.named_children():
            full = f"{prefix}.{name}"
            if isinstance(layer, ConvUnit):
                current = self.add(full)
            elif isinstance(layer, nn.Sequential):
                current = self.walk(layer, full, current)
            elif isinstance(layer, Residual):
                body = self.walk(layer.body, f"{full}.body", current)
                shortcut = current if layer.shortcut is None else self.add(f"{full}.shortcut")
                if body is None or shortcut is None:
                    raise ValueError(f"residual {full!r} adds the input image: no kernels to tie")
                current = self.join(body, shortcut, full)
        return current


def tied_units(model: nn.Module) -> list[tuple[list[str], str]]:
    """Groups of conv units whose channels residual joins add, with each group's importance probe.

    A unit no join touches is a group of its own, probed at its own output; a tied group is probed
    at the output of its last join (ResCNN: conv3's output plus conv1's, as the authors measure it).
    Groups come in model order of their first unit.
    """
    ties = _Ties()
    ties.walk(model.features, "features", None)
    groups: dict[str, list[str]] = {}
    for name, unit in units(model):
        if isinstance(unit, ConvUnit):
            groups.setdefault(ties.find(name), []).append(name)
    return [(members, ties.probe[root]) for root, members in groups.items()]


class GeneLayout:
    """Where each gene layer sits in a chromosome and which kernels of which units a chromosome keeps.

    ``unit_names``/``unit_sizes`` are the searched units in model order: the columns of a decoded
    keep matrix (a ``ModuleSet`` row).
    """

    def __init__(self, layers: Sequence[GeneLayer], unit_names: Sequence[str], unit_sizes: Sequence[int]) -> None:
        self.layers = list(layers)
        self.unit_names = list(unit_names)
        self.unit_sizes = list(unit_sizes)
        starts = torch.tensor([0, *self.unit_sizes]).cumsum(0).tolist()
        self._slot = {name: (starts[i], starts[i + 1]) for i, name in enumerate(self.unit_names)}
        self.offsets = torch.tensor([0, *(layer.groups for layer in self.layers)]).cumsum(0).tolist()

    @classmethod
    def from_model(cls, model: nn.Module, searched: Sequence[str], small: int = SMALL_GROUPS,
                   large: int = LARGE_GROUPS, large_layer: int = LARGE_LAYER) -> GeneLayout:
        """The layout over the ``searched`` conv units of ``model``: ``small`` groups a layer under
        ``large_layer`` kernels, else ``large``; units outside ``searched`` stay whole."""
        named = dict(units(model))
        order = {name: i for i, name in enumerate(named)}
        wanted = set(searched)
        layers = []
        for members, probe in tied_units(model):
            kept = tuple(m for m in members if m in wanted)
            if not kept:
                continue
            size = named[kept[0]].num_units
            layers.append(GeneLayer(kept, probe, size, small if size < large_layer else large))
        layers.sort(key=lambda layer: order[layer.units[-1]])
        names = sorted(wanted, key=order.__getitem__)
        return cls(layers, names, [named[n].num_units for n in names])

    @property
    def genes(self) -> int:
        """Genes of a chromosome."""
        return self.offsets[-1]

    @property
    def probes(self) -> list[str]:
        """The module measuring each gene layer's kernel importance, in gene-layer order."""
        return [layer.probe for layer in self.layers]

    def decode(self, genes: torch.Tensor, orders: Sequence[torch.Tensor]) -> torch.Tensor:
        """Kept kernels (classes, n, units) bool of chromosomes ``genes`` (classes, n, genes).

        ``orders[i]`` (classes, size) lists gene layer i's kernels by decreasing importance for each
        class. A layer whose genes are all 0 keeps its first (most important) group: never empty.
        """
        classes, n = genes.shape[:2]
        keep = torch.zeros(classes, n, sum(self.unit_sizes), dtype=torch.bool, device=genes.device)
        for i, (layer, order) in enumerate(zip(self.layers, orders, strict=True)):
            group_of_rank = layer.group_of_rank().to(genes.device)
            by_rank = genes[..., self.offsets[i]:self.offsets[i + 1]].bool()[..., group_of_rank]  # (C, n, size)
            empty = ~by_rank.any(-1, keepdim=True)
            by_rank = by_rank | (empty & (group_of_rank == 0))
            kept = torch.zeros_like(by_rank).scatter_(-1, order.to(genes.device)[:, None, :].expand_as(by_rank),
                                                      by_rank)
            for unit in layer.units:
                start, end = self._slot[unit]
                keep[..., start:end] = kept
        return keep
