"""CNNSplitter's genetic operators and cooperative fitness on tiny, hand-made populations."""

from __future__ import annotations

import math

import torch

from bench.modular.cooperative import Composer, accuracy_threshold, distance_table
from bench.modular.genetic import (
    Breeding,
    initial_population,
    next_generation,
    random_reset,
    single_point_crossover,
    steady_state,
)
from bench.pipeline.metrics import mean_pairwise_jaccard


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_steady_state_takes_the_fittest_best_first_ties_by_index():
    assert steady_state(torch.tensor([0.2, 0.9, 0.5, 0.9, 0.1]), 3).tolist() == [1, 3, 2]


def test_elites_survive_unchanged_in_front_and_the_population_keeps_its_size():
    population = torch.rand(8, 30, generator=gen()) < 0.5
    fitness = torch.tensor([0.1, 0.8, 0.3, 0.9, 0.2, 0.7, 0.0, 0.4])
    nxt = next_generation(population, fitness, Breeding(8, parents=4, elites=3, mutation=0.1), gen(1))
    assert nxt.shape == population.shape
    assert torch.equal(nxt[:3], population[[3, 1, 5]])


def test_single_point_crossover_joins_a_prefix_of_one_parent_to_the_suffix_of_the_next():
    parents = torch.stack([torch.zeros(12, dtype=torch.bool), torch.ones(12, dtype=torch.bool)])
    children = single_point_crossover(parents, 40, gen()).int()
    even, odd = children[0::2], children[1::2]  # even: zeros then ones (parents 0, 1); odd: ones then zeros
    assert torch.equal(even, even.sort(dim=1).values)
    assert torch.equal(odd, odd.sort(dim=1, descending=True).values)
    assert len(set(even.sum(1).tolist())) > 5  # the point varies


def test_mutation_resets_exactly_the_given_share_of_genes_to_random_bits():
    children = torch.zeros(4000, 40, dtype=torch.bool)
    mutated = random_reset(children, 0.05, gen())  # int(0.05 * 40) = 2 genes reset per child
    changed = mutated.sum(1)
    assert changed.max() <= 2
    assert math.isclose(changed.float().mean().item(), 1.0, abs_tol=0.05)  # each reset bit is 1 half the time
    positions = mutated.float().mean(0)
    assert positions.min() > 0.01  # every gene can be chosen
    assert random_reset(torch.zeros(500, 10, dtype=torch.bool), 0.0, gen()).sum(1).max() == 1  # at least one


def test_initial_population_sets_the_drawn_share_and_favours_important_groups():
    population = initial_population([10, 20], 300, (0.4, 0.8), gen())
    first, second = population[:, :10].sum(1), population[:, 10:].sum(1)
    assert first.min() >= 4 and first.max() <= 8 and second.min() >= 8 and second.max() <= 16
    share = population[:, 10:].float().mean(0)
    assert share[:3].mean() > share[-3:].mean() + 0.2


def test_distance_table_is_one_minus_the_jaccard_index():
    sets = torch.rand(6, 25, generator=gen()) < 0.5
    table = distance_table(sets)
    assert torch.allclose(table.diagonal(), torch.zeros(6))
    assert math.isclose(1 - table.sum().item() / 30, mean_pairwise_jaccard(sets), rel_tol=1e-5)


def votes_and_labels():
    """3 classes x 2 solutions x 6 samples (2 a class): solution 1 of each class votes right, solution 0 wrong."""
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    votes = torch.zeros(3, 2, 6)
    for c in range(3):
        votes[c, 1, labels == c] = 5.0  # a sure vote for its own class's samples, none for the others
        votes[c, 0, labels == c] = -1.0  # below every other vote on its own samples: always wrong there
    return votes, labels


def test_the_perfect_composition_wins_and_rates_its_solutions():
    votes, labels = votes_and_labels()
    keep = torch.zeros(3, 2, 4, dtype=torch.bool)
    keep[:, 1, 0] = True
    keep[0, 1, 1] = keep[1, 1, 2] = keep[2, 1, 3] = True  # best modules share kernel 0: Jaccard 1/3 a pair
    scores = Composer(votes, labels, keep, weight=0.9, beam_min=1).scores([2, 0, 1])
    assert scores.best.tolist() == [1, 1, 1]
    assert scores.best_accuracy == 1.0
    assert math.isclose(scores.best_diff, 2 / 3, rel_tol=1e-6)
    assert math.isclose(scores.best_fitness, 0.9 + 0.1 * 2 / 3, rel_tol=1e-6)
    assert torch.allclose(scores.fitness[:, 1], torch.full((3,), scores.best_fitness))
    assert (scores.fitness[:, 0] < scores.best_fitness).all()


def test_the_leading_composition_survives_the_beam_even_when_it_is_poor():
    votes, labels = votes_and_labels()
    keep = torch.rand(3, 2, 4, generator=gen()) < 0.5
    scores = Composer(votes, labels, keep, weight=0.9, beam_min=1, beam_max=1).scores([0, 1, 2])
    assert (scores.fitness[:, 0] > 0).all()  # (0, 0, 0) was kept although only one composition fits the beam
    assert scores.best.tolist() == [1, 1, 1]


def test_accuracy_thresholds_follow_the_authors_table():
    assert [accuracy_threshold(s) for s in (2, 4, 5, 8, 10, 20)] == [0.95, 0.95, 0.85, 0.85, 0.8, 0.8]
