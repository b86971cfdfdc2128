"""CNNSplitter's cooperative evolution: one population per class, evolved together, resumable.

Each generation decodes every class's chromosomes into kept kernels, scores all candidates in
stacked forward passes (``CandidateScorer``), rates every solution by the compositions it joins
(``Composer``), keeps the generation's best composition when it beats the best so far (fixed
score 0.9 * accuracy + 0.1 * diversity, as the authors pick their generation), then breeds. The
accuracy weight of the next generation is ``0.9 + max(0, 0.9 - this generation's best accuracy)``.
After every generation the whole state (populations, generator, best, counters) is saved, so a
killed search resumes from its last completed generation and ends as an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.modular.candidates import CandidateScorer
from bench.modular.cooperative import DIFF_WEIGHT, Composer, Scores
from bench.modular.genetic import Breeding, initial_population, next_generation
from bench.modular.kernel_groups import GeneLayout
from bench.protocol.method import StageCheckpoint, StageProgress

BASE_WEIGHT = 0.9
TARGET_ACCURACY = 0.9


@dataclass(frozen=True)
class SearchSettings:
    """``generations`` breeding steps (``generations + 1`` evaluations, the first of the initial
    population), the ``breeding``, the share of genes set in an initial chromosome (``active``,
    per layer) and the composition beam (``beam_min``, ``beam_max``)."""

    generations: int = 200
    breeding: Breeding = field(default_factory=Breeding)
    active: tuple[float, float] = (0.4, 0.8)
    beam_min: int = 50
    beam_max: int = 500


@dataclass
class SearchState:
    """Everything a search needs to go on; tensors and plain values only (a stage checkpoint)."""

    generation: int  # the next generation to evaluate
    populations: torch.Tensor  # (classes, population, genes) bool
    rng: torch.Tensor  # the generator's state
    weight: float = BASE_WEIGHT
    best_score: float = -math.inf
    best_generation: int = -1
    best_keep: torch.Tensor | None = None  # (classes, units) bool: the chosen modules
    best_accuracy: float = 0.0
    best_diff: float = 0.0
    candidates: int = 0
    scoring_seconds: float = 0.0
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        """A dict for ``StageCheckpoint.save``."""
        return dataclasses.asdict(self)

    @property
    def candidates_per_second(self) -> float:
        """Candidate modules scored per second of forward passes."""
        return self.candidates / self.scoring_seconds if self.scoring_seconds > 0 else 0.0


class Evolution:
    """The search over ``layout`` for ``num_classes`` classes; ``orders`` are the per-layer
    importance orderings, ``labels`` the held-out labels the ``scorer`` votes on."""

    def __init__(self, layout: GeneLayout, orders: Sequence[torch.Tensor], scorer: CandidateScorer,
                 labels: torch.Tensor, num_classes: int, settings: SearchSettings, seed: int) -> None:
        settings.breeding.check()
        self.layout, self.orders, self.scorer = layout, list(orders), scorer
        self.labels, self.num_classes = labels, num_classes
        self.settings, self.seed = settings, seed

    def run(self, checkpoint: StageCheckpoint, progress: StageProgress) -> SearchState:
        """Evolve from the checkpoint's generation (or the start) to the last one; returns the final state."""
        state = self._resumed(checkpoint) or self._initial()
        rng = torch.Generator().manual_seed(0)
        rng.set_state(state.rng)
        last = self.settings.generations
        progress.start(f"cnnsplitter search from generation {state.generation}", last + 1 - state.generation)
        while state.generation <= last:
            started, scored = time.perf_counter(), self.scorer.seconds
            scores, keep = self._score(state.populations, state.weight, rng)
            score = BASE_WEIGHT * scores.best_accuracy + DIFF_WEIGHT * scores.best_diff
            if score > state.best_score:
                state.best_score, state.best_generation = score, state.generation
                state.best_keep = keep[torch.arange(self.num_classes), scores.best.cpu()]
                state.best_accuracy, state.best_diff = scores.best_accuracy, scores.best_diff
            if state.generation < last:
                state.populations = torch.stack([
                    next_generation(pop, fit.cpu(), self.settings.breeding, rng)
                    for pop, fit in zip(state.populations, scores.fitness, strict=True)])
            state.weight = BASE_WEIGHT + max(0.0, TARGET_ACCURACY - scores.best_accuracy)
            state.generation += 1
            state.rng = rng.get_state()
            state.candidates += keep.shape[0] * keep.shape[1]
            state.scoring_seconds += self.scorer.seconds - scored
            state.seconds += time.perf_counter() - started
            checkpoint.save(state.to_state())
            progress.advance(f"cnnsplitter generation {state.generation - 1}/{last}: "
                             f"best fitness {state.best_score:.4f} (accuracy {state.best_accuracy:.3f})")
        return state

    def _initial(self) -> SearchState:
        rng = torch.Generator().manual_seed(self.seed)
        groups = [layer.groups for layer in self.layout.layers]
        size = self.settings.breeding.population
        populations = torch.stack([initial_population(groups, size, self.settings.active, rng)
                                   for _ in range(self.num_classes)])
        return SearchState(0, populations, rng.get_state())

    def _resumed(self, checkpoint: StageCheckpoint) -> SearchState | None:
        stored = checkpoint.load()
        if not stored:
            return None
        state = SearchState(**stored)
        expected = (self.num_classes, self.settings.breeding.population, self.layout.genes)
        return state if tuple(state.populations.shape) == expected else None

    def _score(self, populations: torch.Tensor, weight: float, rng: torch.Generator) -> tuple[Scores, torch.Tensor]:
        """The generation's scores and its decoded keep masks (classes, population, units)."""
        keep = self.layout.decode(populations, self.orders)  # (classes, population, units)
        classes = torch.arange(self.num_classes).repeat_interleave(populations.shape[1])
        votes = self.scorer.own_class_logits(keep.flatten(0, 1), classes).view(*keep.shape[:2], -1)
        order = torch.randperm(self.num_classes, generator=rng).tolist()
        composer = Composer(votes, self.labels.to(votes.device), keep.to(votes.device), weight,
                            self.settings.beam_min, self.settings.beam_max)
        return composer.scores(order), keep
