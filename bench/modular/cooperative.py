"""CNNSplitter's cooperative fitness: a solution is as good as the best composition it takes part in.

Every candidate module has voted on the held-out samples with its own-class logit. Classes are
shuffled and merged pairwise, level by level, into compositions of 2, 4, 8, ... classes (the
authors' recorder): each merge scores every pair of the two sides' retained compositions, keeps
the most accurate ones (those at or above the level's accuracy threshold, at least ``beam_min``
and at most ``beam_max``), ordered by fitness; the composition of every class's first solution
(the previous generation's best, elites being kept in front) always survives. A composition's
fitness is ``weight * accuracy + 0.1 * (1 - mean pairwise Jaccard of its kernel sets)``;
accuracy is the argmax of the votes on the samples of its classes. A solution's fitness is the
best fitness of the full compositions it joins (0 when it joins none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

DIFF_WEIGHT = 0.1
CHUNK_ELEMENTS = 1 << 22  # bound on the (rows, compositions, samples) tensors of one merge step


def accuracy_threshold(size: int) -> float:
    """The authors' accuracy bar for a composition of ``size`` classes (2, 4: 0.95; 8: 0.85; 10: 0.8)."""
    return 0.95 if size <= 4 else 0.85 if size <= 8 else 0.8


def distance_table(keep: torch.Tensor) -> torch.Tensor:
    """(n, n) float: 1 - Jaccard index between the rows of a (n, units) bool matrix (two empty rows: 0)."""
    a = keep.float()
    inter = a @ a.T
    size = a.sum(1)
    union = size[:, None] + size[None, :] - inter
    return 1 - torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


@dataclass
class Beam:
    """Retained compositions of some classes: ``picks`` (k, classes) solution indices, best vote and its
    class per sample (``top``, ``winner``: (k, samples)), and their scores."""

    classes: list[int]
    picks: torch.Tensor
    top: torch.Tensor
    winner: torch.Tensor
    diff_sum: torch.Tensor  # (k,) sum over class pairs of 1 - Jaccard
    accuracy: torch.Tensor  # (k,)
    fitness: torch.Tensor  # (k,)


@dataclass
class Scores:
    """Each solution's fitness (classes, population) and the best composition (one solution per class)."""

    fitness: torch.Tensor
    best: torch.Tensor
    best_accuracy: float
    best_diff: float
    best_fitness: float


class Composer:
    """Scores one generation: ``votes`` (classes, population, samples), ``labels`` (samples,),
    ``keep`` (classes, population, units) bool, accuracy ``weight``."""

    def __init__(self, votes: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor, weight: float,
                 beam_min: int = 50, beam_max: int = 500) -> None:
        self.votes, self.labels, self.weight = votes, labels, weight
        self.population = votes.shape[1]
        self.distance = distance_table(keep.flatten(0, 1))  # (classes * population,) squared
        self.beam_min, self.beam_max = beam_min, beam_max

    def scores(self, order: Sequence[int]) -> Scores:
        """Merge the classes in ``order`` (a shuffle) pairwise up to full compositions and score every solution."""
        if len(order) < 2:
            raise ValueError("a composition needs at least two classes")
        beams = [self._single(c) for c in order]
        while len(beams) > 1:
            beams = [self._merge(beams[i], beams[i + 1]) if i + 1 < len(beams) else beams[i]
                     for i in range(0, len(beams), 2)]
        full = beams[0]
        fitness = torch.zeros(self.votes.shape[:2], device=self.votes.device)
        for position, c in enumerate(full.classes):
            fitness[c].scatter_reduce_(0, full.picks[:, position], full.fitness, "amax")
        b = int(full.fitness.argmax())
        best = torch.empty(len(full.classes), dtype=torch.long, device=full.picks.device)
        best[full.classes] = full.picks[b]
        pairs = len(full.classes) * (len(full.classes) - 1) / 2
        return Scores(fitness, best, float(full.accuracy[b]), float(full.diff_sum[b] / pairs),
                      float(full.fitness[b]))

    def _single(self, c: int) -> Beam:
        n = self.population
        device = self.votes.device
        zeros = torch.zeros(n, device=device)
        return Beam([c], torch.arange(n, device=device)[:, None], self.votes[c],
                    torch.full_like(self.votes[c], c, dtype=torch.long), zeros, zeros + 1, zeros)

    def _merge(self, a: Beam, b: Beam) -> Beam:
        classes = a.classes + b.classes
        task = torch.isin(self.labels, torch.tensor(classes, device=self.labels.device))
        accuracy, cross = self._pair_scores(a, b, task)
        pairs = len(classes) * (len(classes) - 1) / 2
        diff_sum = a.diff_sum[:, None] + b.diff_sum[None, :] + cross  # (ka, kb)
        fitness = self.weight * accuracy + DIFF_WEIGHT * diff_sum / pairs
        chosen = self._retained(a, b, accuracy.flatten(), fitness.flatten(), len(classes))
        i, j = chosen // len(b.picks), chosen % len(b.picks)
        first = a.top[i] >= b.top[j]  # ties go to the earlier class, as argmax over the concatenation does
        return Beam(classes, torch.cat([a.picks[i], b.picks[j]], dim=1), torch.where(first, a.top[i], b.top[j]),
                    torch.where(first, a.winner[i], b.winner[j]), diff_sum.flatten()[chosen],
                    accuracy.flatten()[chosen], fitness.flatten()[chosen])

    def _pair_scores(self, a: Beam, b: Beam, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ka, kb) accuracy on the task's samples and summed cross-side distances of every pairing."""
        y = self.labels[task]
        a_top, a_win, b_top, b_win = a.top[:, task], a.winner[:, task], b.top[:, task], b.winner[:, task]
        a_flat = torch.tensor(a.classes, device=a.picks.device) * self.population + a.picks  # (ka, m)
        b_flat = torch.tensor(b.classes, device=b.picks.device) * self.population + b.picks  # (kb, n)
        width = max(len(y), a_flat.shape[1] * b_flat.shape[1], 1)
        step = max(1, CHUNK_ELEMENTS // (len(b.picks) * width))
        accuracy, cross = [], []
        for s in range(0, len(a.picks), step):
            rows = slice(s, s + step)
            first = a_top[rows, None, :] >= b_top[None, :, :]  # (rows, kb, samples)
            winner = torch.where(first, a_win[rows, None, :], b_win[None, :, :])
            accuracy.append((winner == y).float().mean(-1) if len(y) else first.new_zeros(first.shape[:2]).float())
            pair = self.distance[a_flat[rows, None, :, None], b_flat[None, :, None, :]]  # (rows, kb, m, n)
            cross.append(pair.sum(dim=(2, 3)))
        return torch.cat(accuracy), torch.cat(cross)

    def _retained(self, a: Beam, b: Beam, accuracy: torch.Tensor, fitness: torch.Tensor, size: int) -> torch.Tensor:
        """Flat indices (a row * len(b) + b row) of the compositions kept, by decreasing fitness."""
        passing = int((accuracy >= accuracy_threshold(size)).sum())
        count = min(max(passing, self.beam_min), self.beam_max, len(accuracy))
        top = torch.sort(accuracy, descending=True, stable=True).indices[:count]
        top = top[torch.sort(fitness[top], descending=True, stable=True).indices]
        a_zero, b_zero = (a.picks == 0).all(1).nonzero(), (b.picks == 0).all(1).nonzero()
        if len(a_zero) and len(b_zero):
            leader = a_zero[0] * len(b.picks) + b_zero[0]
            if not (top == leader).any():
                top = torch.cat([top, leader])
        return top
