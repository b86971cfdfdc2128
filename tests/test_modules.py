"""The threshold rule, streaming activity counts and target composition."""

import pytest
import torch
from torch import nn

from bench.models.cnn import simcnn
from bench.modular.activity import collect_activity, threshold_masks
from bench.modular.masking import attach_generators, maskable_units
from bench.protocol.modules import ActivityStats, ModuleSet


def _stats(counts: list[list[int]], totals: list[int], sizes: list[int]) -> ActivityStats:
    layers = [f"l{i}" for i in range(len(sizes))]
    empty = torch.zeros(0, sum(sizes), dtype=torch.bool)
    return ActivityStats(layers, sizes, torch.tensor(counts), torch.tensor(totals), empty,
                         torch.zeros(0, dtype=torch.long))


def test_threshold_keeps_units_at_or_above_frequency():
    # class 0: 10 samples; layer 0 units active 9, 10, 3 times; layer 1 units 10, 0
    stats = _stats([[9, 10, 3, 10, 0]], [10], [3, 2])
    assert threshold_masks(stats, 0.9).tolist() == [[True, True, False, True, False]]


def test_threshold_lowered_in_steps_of_005_until_a_layer_keeps_a_unit():
    # layer 1's best unit fires in 80% of samples: 0.9 -> 0.85 -> 0.8 keeps it, not the 0.75 one
    stats = _stats([[10, 8, 0, 0], [10, 0, 0, 0]], [10, 10], [1, 3])
    masks = threshold_masks(stats, 0.9)
    assert masks[0].tolist() == [True, True, False, False]
    # class 1: layer 1 never fires: its most frequent unit (the first) is kept
    assert masks[1].tolist() == [True, True, False, False]


def test_threshold_fallback_takes_the_lowered_level_for_every_unit_that_reaches_it():
    stats = _stats([[0, 8, 8, 7]], [10], [4])
    assert threshold_masks(stats, 0.9).tolist() == [[False, True, True, False]]


def test_target_module_is_the_union_of_class_modules():
    modules = ModuleSet("kernel", ["a", "b"], [2, 2],
                        torch.tensor([[1, 0, 0, 1], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool))
    target = modules.target([0, 1])
    assert target["a"].tolist() == [True, False]
    assert target["b"].tolist() == [True, True]
    restored = ModuleSet.from_state(modules.to_state())
    assert torch.equal(restored.masks, modules.masks) and restored.sizes == [2, 2]


def _batches(n: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def test_streaming_counts_equal_a_whole_data_set_pass():
    torch.manual_seed(0)
    model = attach_generators(simcnn(4, width=0.125)).eval()
    batches = _batches(40, 7)
    stats = collect_activity(model, batches, num_classes=4, per_class=5)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    with torch.no_grad():
        model(x)
    active = torch.cat([u.mask > 0 for _, u in maskable_units(model)], dim=1)
    for c in range(4):
        assert torch.equal(stats.counts[c], active[y == c].sum(0))
        assert stats.class_totals[c] == (y == c).sum()
        # the kept samples are the first 5 of each class, in data order
        assert torch.equal(stats.samples[stats.sample_labels == c], active[y == c][:5])
    assert stats.sizes == [u.num_units for _, u in maskable_units(model)]


def test_standard_model_activity_is_positive_post_relu_mean():
    model = simcnn(4, width=0.125).eval()
    batches = _batches(8, 8)
    stats = collect_activity(model, batches, num_classes=4, per_class=8)
    unit = maskable_units(model)[0][1]
    outputs = []
    handle = unit.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        model(batches[0][0])
    handle.remove()
    expected = outputs[0].mean(dim=(2, 3)) > 0
    got = stats.samples[:, : unit.num_units]
    order = torch.argsort(batches[0][1], stable=True)
    assert torch.equal(got, expected[order]) or torch.equal(got.sum(0), expected.sum(0))


def test_collect_activity_restores_training_mode():
    model = nn.Sequential()
    model = simcnn(2, width=0.125).train()
    collect_activity(model, _batches(4, 4), num_classes=4, per_class=1)
    assert model.training


@pytest.mark.parametrize("threshold", [0.3, 0.9])
def test_masks_never_leave_a_layer_empty(threshold):
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(0, 3, (5, 12), generator=g)
    stats = _stats(counts.tolist(), [100] * 5, [4, 4, 4])
    masks = threshold_masks(stats, threshold)
    for layer in masks.split([4, 4, 4], dim=1):
        assert layer.any(dim=1).all()


UNITS = [("a", 2), ("b", 3)]


def _modules(layers=("a", "b"), sizes=(2, 3), masks=None, frequencies=None) -> ModuleSet:
    masks = torch.ones(4, sum(sizes), dtype=torch.bool) if masks is None else masks
    return ModuleSet("kernel", list(layers), list(sizes), masks, frequencies=frequencies)


@pytest.mark.parametrize(("modules", "problem"), [
    (_modules(masks=torch.ones(4, 5)), "masks must be a bool tensor (classes, units), got torch.float32 (4, 5)"),
    (_modules(sizes=(2,)), "2 layers but 1 sizes"),
    (_modules(layers=("a", "c")), "layer 'c' is not the model's maskable units (expected 'b' there)"),
    (_modules(layers=("b", "a"), sizes=(3, 2)), "layer 'b' is out of order among the model's maskable units"),
    (_modules(layers=("a",), sizes=(2,)), "no masks for layer 'b'"),
    (_modules(layers=("a", "b", "c"), sizes=(2, 3, 1)), "layer 'c' is not one of the model's maskable units"),
    (_modules(sizes=(2, 2)), "layer 'b' has 3 units in the model, the masks give it 2"),
    (_modules(masks=torch.ones(3, 5, dtype=torch.bool)), "masks are (3, 5), expected (classes, units) = (4, 5)"),
    (_modules(frequencies=torch.ones(4, 4)), "frequencies are (4, 4), expected (classes, units) = (4, 5)"),
])
def test_a_module_set_that_does_not_fit_says_where(modules, problem):
    """Issue 22, defect 10: what the runner checks a method's modules with, each problem named."""
    assert problem in modules.misfit(UNITS, 4)


def test_a_module_set_that_fits_has_no_misfit():
    assert _modules(frequencies=torch.rand(4, 5)).misfit(UNITS, 4) is None
