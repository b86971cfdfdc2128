"""Rounding a module's kept units per layer up to a multiple, by the task's unit frequencies."""

import pytest
import torch

from bench.modular.rounding import rounded_keep, rounded_layer


def test_rounding_adds_the_most_frequent_dropped_units():
    keep = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0, 0, 0], dtype=torch.bool)  # 3 kept
    freq = torch.tensor([0.9, 0.2, 0.7, 0.95, 0.7, 0.99, 0.1, 0.0, 0.8, 0.3])
    rounded = rounded_layer(keep, freq, 4)
    assert rounded.nonzero().flatten().tolist() == [0, 3, 5, 8]  # 8 (0.8) is the most frequent dropped unit
    ties = rounded_layer(keep, freq, 6)  # then 2 and 4 (0.7 each, lower index first) and 9 (0.3)
    assert ties.nonzero().flatten().tolist() == [0, 2, 3, 4, 5, 8]


def test_rounding_keeps_multiples_and_caps_at_the_layer_size():
    keep = torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool)
    freq = torch.rand(6)
    assert rounded_layer(keep, freq, 4).equal(keep)
    assert rounded_layer(keep, freq, 8).all()  # 8 > 6 units: the whole layer


def test_rounded_keep_rounds_every_layer_on_its_own():
    torch.manual_seed(0)
    sizes = [10, 24, 7]
    keep = torch.rand(sum(sizes)) < 0.3
    keep[[0, 10, 34]] = True
    freq = torch.rand(sum(sizes))
    rounded = rounded_keep(keep, freq, sizes, 4)
    for before, after, size in zip(keep.split(sizes), rounded.split(sizes), sizes, strict=True):
        assert int(after.sum()) in (size, -(-int(before.sum()) // 4) * 4)
        assert bool((after | ~before).all())  # every kept unit stays
    assert rounded_keep(keep, freq, sizes, 1).equal(keep)
    with pytest.raises(ValueError, match="at least 1"):
        rounded_keep(keep, freq, sizes, 0)
