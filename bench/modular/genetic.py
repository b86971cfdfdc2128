"""The genetic operators of CNNSplitter's search (PyGAD's, as the authors configured them).

Chromosomes are bool rows. Every random draw comes from one ``torch.Generator`` the caller seeds
and stores, so a search resumed from its last generation continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

INIT_RANK_TEMPERATURE = 10.0  # initial genes: P(group i) ~ exp(-i / 10), the authors' smoothing


@dataclass(frozen=True)
class Breeding:
    """How one generation breeds the next: the ``elites`` fittest survive as they are (best first),
    the ``parents`` fittest mate by single-point crossover into the rest of the ``population``, and
    each child has ``mutation`` of its genes (at least one) reset to a random bit."""

    population: int = 100
    parents: int = 50
    elites: int = 20
    mutation: float = 0.05

    def check(self) -> None:
        """ValueError for settings no generation can use (each bad value named before the ones it is compared with)."""
        for name, least in (("population", 1), ("elites", 0), ("parents", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if not 0 <= self.elites < self.population:
            raise ValueError(f"elites ({self.elites}) must be fewer than the population ({self.population})")
        if not 1 <= self.parents <= self.population:
            raise ValueError(f"parents ({self.parents}) must be between 1 and the population ({self.population})")
        if not 0 <= self.mutation <= 1:
            raise ValueError(f"mutation ({self.mutation}) must be a share of the genes, between 0 and 1")


def initial_population(groups: Sequence[int], size: int, active: tuple[float, float],
                       generator: torch.Generator) -> torch.Tensor:
    """(size, genes) bool, biased towards important groups.

    Per chromosome and gene layer of ``g`` groups, ``int(g * r)`` genes are set, ``r`` drawn
    uniformly from ``active``, chosen without replacement with weight ``exp(-i / 10)`` for group
    ``i`` (group 0 holds the most important kernels).
    """
    rows = []
    for _ in range(size):
        parts = []
        for g in groups:
            ratio = active[0] + (active[1] - active[0]) * float(torch.rand((), generator=generator))
            weights = torch.exp(-torch.arange(g, dtype=torch.float64) / INIT_RANK_TEMPERATURE)
            chosen = torch.multinomial(weights, int(g * ratio), replacement=False, generator=generator)
            parts.append(torch.zeros(g, dtype=torch.bool).index_fill_(0, chosen, True))
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def steady_state(fitness: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` fittest, best first (ties: the earlier index first)."""
    return torch.sort(fitness, descending=True, stable=True).indices[:count]


def single_point_crossover(parents: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` children: child k takes parent k's genes before a random point, parent k+1's after it."""
    genes = parents.shape[1]
    k = torch.arange(count)
    points = torch.randint(0, genes, (count,), generator=generator)
    first, second = parents[k % len(parents)], parents[(k + 1) % len(parents)]
    return torch.where(torch.arange(genes)[None, :] < points[:, None], first, second)


def random_reset(children: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Each child with ``max(1, int(rate * genes))`` distinct genes, chosen at random, reset to a random bit."""
    count, genes = children.shape
    per_child = max(1, int(rate * genes))
    positions = torch.rand(count, genes, generator=generator).argsort(dim=1)[:, :per_child]
    values = torch.randint(0, 2, (count, per_child), generator=generator).bool()
    return children.clone().scatter_(1, positions, values)


def next_generation(population: torch.Tensor, fitness: torch.Tensor, breeding: Breeding,
                    generator: torch.Generator) -> torch.Tensor:
    """The elites (best first), then the mutated children of the parents: same shape as ``population``."""
    elites = population[steady_state(fitness, breeding.elites)]
    parents = population[steady_state(fitness, breeding.parents)]
    children = single_point_crossover(parents, len(population) - breeding.elites, generator)
    return torch.cat([elites, random_reset(children, breeding.mutation, generator)])
