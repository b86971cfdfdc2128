"""The empty-layer rules of the threshold rule: what a class module keeps of a layer no unit of which
reaches any threshold level, and how often that happened per layer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.errors import UsageError
from bench.modular.activity import EmptyModuleLayer, threshold_modules
from bench.plugins.manager import get_plugins
from bench.protocol.method import StageContext
from bench.protocol.modules import ActivityStats
from bench.protocol.recipe import Recipe

# class 0 uses every layer; class 1 never fires layer 'b' (40 units) and barely layer 'c' (3%)
SIZES = [4, 40, 20]


def _stats() -> ActivityStats:
    counts = torch.zeros(2, sum(SIZES), dtype=torch.int64)
    counts[0] = 100
    counts[1, :4] = 100
    counts[1, 44 + 7] = 3  # layer 'c', unit 7: active in 3% of class 1's samples
    return ActivityStats(["a", "b", "c"], SIZES, counts, torch.tensor([100, 100]),
                         torch.zeros(0, sum(SIZES), dtype=torch.bool), torch.zeros(0, dtype=torch.int64))


def _layers(row: torch.Tensor) -> list[torch.Tensor]:
    return list(row.split(SIZES))


def test_most_frequent_keeps_the_layer_s_most_frequent_unit_and_counts_per_layer():
    masks, fallbacks = threshold_modules(_stats(), 0.9)
    assert fallbacks == [0, 1, 1]
    assert masks[0].all()
    a, b, c = _layers(masks[1])
    assert a.all() and b.sum() == 1 and c.nonzero().flatten().tolist() == [7]


def test_whole_keeps_every_unit_of_the_layer():
    masks, fallbacks = threshold_modules(_stats(), 0.9, "whole")
    assert masks.all() and fallbacks == [0, 1, 1]


def test_random5_keeps_a_seeded_five_percent_at_least_one_unit():
    masks, _ = threshold_modules(_stats(), 0.9, "random5", seed=3)
    _, b, c = _layers(masks[1])
    assert int(b.sum()) == 2 and int(c.sum()) == 1  # int(0.05 * 40), max(1, int(0.05 * 20))
    again, _ = threshold_modules(_stats(), 0.9, "random5", seed=3)
    assert again.equal(masks)
    layer_b = [_layers(threshold_modules(_stats(), 0.9, "random5", seed=s).masks[1])[1] for s in range(5)]
    draws = {tuple(b.nonzero().flatten().tolist()) for b in layer_b}
    assert len(draws) > 1  # the seed decides which units


def test_error_names_the_layer_and_the_class():
    with pytest.raises(EmptyModuleLayer, match="class 1's module would keep no unit of layer 'b'"):
        threshold_modules(_stats(), 0.9, "error")


def test_the_rule_does_not_fire_while_a_lowered_threshold_keeps_a_unit():
    masks, fallbacks = threshold_modules(_stats(), 0.02)
    assert fallbacks == [0, 1, 0]  # 3% reaches the 0.02 threshold: layer 'c' keeps its unit 7 by the rule itself
    assert _layers(masks[1])[2].nonzero().flatten().tolist() == [7]


def test_unknown_rule_is_a_usage_error():
    with pytest.raises(UsageError, match="empty_layer"):
        threshold_modules(_stats(), 0.9, "random10")


def test_masked_methods_apply_their_rule_and_report_the_fallbacks_per_layer():
    plugins = get_plugins()
    method, spec = plugins.methods.get("nemo"), plugins.models.get("simcnn")
    hparams = dataclasses.replace(method.hparams(spec), empty_layer="whole")
    ctx = StageContext(spec, None, torch.device("cpu"), Recipe(epochs=1), hparams, 0.9, _stats)
    modules = method.modularize(ctx, None)
    assert modules.masks.all()
    assert modules.metrics == {"empty_layer_fallbacks": 2, "empty_layer_fallbacks.b": 1, "empty_layer_fallbacks.c": 1}
