"""CNNSplitter's search machinery: stacked masked scoring equals slicing, and a killed search resumes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.models.cnn import mobilenetv2, rescnn, resnet18, simcnn, vgg16
from bench.modular.batchnorm import recalibrate_batchnorm
from bench.modular.candidates import CandidateScorer
from bench.modular.ensemble import ClassModules
from bench.modular.evolution import Evolution, SearchSettings
from bench.modular.extract import extract
from bench.modular.genetic import Breeding
from bench.modular.kernel_groups import GeneLayout
from bench.modular.masking import maskable_units

MODELS = {
    "simcnn": lambda: simcnn(10, width=0.125),
    "rescnn": lambda: rescnn(10, width=0.125),
    "vgg16": lambda: vgg16(10, width=0.125),
    "resnet18": lambda: resnet18(10, width=0.125),
    "mobilenetv2": lambda: mobilenetv2(10, width=0.125),
}


def settled(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with non-trivial BN statistics and biases, so that no channel is silent."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_(0.0, 0.1)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0.0, 0.05)
    return model.eval()


def candidates(model: nn.Module, count: int, share: float) -> tuple[list[str], list[int], torch.Tensor]:
    """(unit names, unit sizes, keep): ``count`` random candidates keeping about ``share`` of every layer."""
    named = maskable_units(model)
    names, sizes = [n for n, _ in named], [u.num_units for _, u in named]
    keep = torch.rand(count, sum(sizes)) < share
    keep[:, torch.tensor([0, *sizes]).cumsum(0)[:-1]] = True  # at least one kernel a layer
    return names, sizes, keep


@pytest.mark.parametrize("name", MODELS)
def test_stacked_masked_scoring_equals_the_physically_sliced_modules(name):
    torch.manual_seed(0)
    model = settled(MODELS[name]())
    names, sizes, keep = candidates(model, 5, 0.6)
    classes = torch.tensor([3, 0, 7, 3, 9])
    inputs = torch.randn(6, 3, 32, 32)
    scorer = CandidateScorer(model, names, sizes, inputs, samples_per_pass=12)  # 2 candidates a pass
    logits = scorer.own_class_logits(keep, classes)
    for i, (row, c) in enumerate(zip(keep, classes.tolist(), strict=True)):
        module = extract(model, dict(zip(names, torch.split(row, sizes), strict=True)))
        with torch.no_grad():
            assert torch.allclose(logits[i], module(inputs)[:, c], rtol=1e-4, atol=1e-5)
    assert scorer.candidates == 5
    assert all(unit.generator is None for _, unit in maskable_units(model))  # the scorer works on a copy


def batch_normalised(module: nn.Module) -> nn.Module:
    """``module`` in eval mode except its BatchNorms, which normalise with the batch's statistics."""
    module.eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    return module


@pytest.mark.parametrize("name", MODELS)
def test_scoring_with_batch_stats_equals_the_sliced_modules_normalising_their_own_batch(name):
    torch.manual_seed(1)
    model = settled(MODELS[name]())
    names, sizes, keep = candidates(model, 4, 0.5)
    classes = torch.tensor([1, 4, 1, 8])
    inputs = torch.randn(32, 3, 32, 32)
    scorer = CandidateScorer(model, names, sizes, inputs, samples_per_pass=64, batch_stats=True)  # 2 a pass
    logits = scorer.own_class_logits(keep, classes)
    plain = CandidateScorer(model, names, sizes, inputs, samples_per_pass=64).own_class_logits(keep, classes)
    for i, (row, c) in enumerate(zip(keep, classes.tolist(), strict=True)):
        module = extract(model, dict(zip(names, torch.split(row, sizes), strict=True)))
        with torch.no_grad():
            # 1e-4: MobileNetV2's 40 batch-normalised layers sum float32 noise to a few 1e-5
            assert torch.allclose(logits[i], batch_normalised(module)(inputs)[:, c], rtol=1e-4, atol=1e-4)
            assert recalibrate_batchnorm(module, [(inputs, None)]) > 0  # what compose does, on these inputs
            assert torch.allclose(logits[i], module.eval()(inputs)[:, c], rtol=0.1, atol=0.05)  # unbiased variances
    assert not torch.allclose(logits, plain, atol=1e-2)  # the full model's statistics rate them otherwise
    assert all(isinstance(m, nn.BatchNorm2d) for m in model.modules() if "norm" in type(m).__name__.lower())


def test_bf16_scoring_with_batch_stats_runs_under_cpu_autocast_close_to_fp32():
    """The GPU's path (bfloat16 autocast, per-candidate statistics in float32), taken on a CPU."""
    torch.manual_seed(2)
    model = settled(simcnn(10, width=0.125))
    names, sizes, keep = candidates(model, 3, 0.6)
    classes, inputs = torch.tensor([1, 2, 3]), torch.randn(16, 3, 32, 32)
    fp32 = CandidateScorer(model, names, sizes, inputs, 32, batch_stats=True).own_class_logits(keep, classes)
    bf16 = CandidateScorer(model, names, sizes, inputs, 32, bf16=True, batch_stats=True).own_class_logits(keep, classes)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=0.05)


def test_class_modules_vote_with_own_class_logits_and_leave_other_columns_zero():
    torch.manual_seed(0)
    a, b = settled(simcnn(4, width=0.125)), settled(simcnn(4, width=0.125))
    composed = ClassModules([a, b], [2, 0], num_classes=4)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = composed(x)
        assert torch.equal(out[:, 2], a(x)[:, 2]) and torch.equal(out[:, 0], b(x)[:, 0])
    assert not out[:, [1, 3]].any()


class MemoryCheckpoint:
    """A stage checkpoint in memory that can stop the search after a given number of saves."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.state, self.saves, self.stop_after = None, 0, stop_after

    def load(self):
        return self.state

    def save(self, state) -> None:
        self.state, self.saves = state, self.saves + 1
        if self.saves == self.stop_after:
            raise KeyboardInterrupt


class Steps:
    """A progress bar that remembers what it was told."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def start(self, description: str, total: int) -> None:
        self.total = total

    def advance(self, description: str | None = None) -> None:
        self.labels.append(description)


def tiny_search():
    torch.manual_seed(0)
    model = settled(simcnn(3, width=0.125))
    named = maskable_units(model)
    layout = GeneLayout.from_model(model, [n for n, _ in named], small=3)
    orders = [torch.stack([torch.randperm(layer.size) for _ in range(3)]) for layer in layout.layers]
    inputs, labels = torch.randn(9, 3, 32, 32), torch.arange(9) % 3
    scorer = CandidateScorer(model, layout.unit_names, layout.unit_sizes, inputs)
    settings = SearchSettings(generations=4, breeding=Breeding(6, parents=4, elites=2, mutation=0.1), beam_min=4)
    return Evolution(layout, orders, scorer, labels, 3, settings, seed=5), scorer


def test_a_killed_search_resumes_from_its_last_generation_and_ends_as_an_uninterrupted_one():
    whole, _ = tiny_search()
    progress = Steps()
    expected = whole.run(MemoryCheckpoint(), progress)
    assert expected.generation == 5 and len(progress.labels) == 5 and "best fitness" in progress.labels[-1]

    first, _ = tiny_search()
    checkpoint = MemoryCheckpoint(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        first.run(checkpoint, Steps())
    assert checkpoint.state["generation"] == 2
    second, scorer = tiny_search()
    progress = Steps()
    resumed = second.run(checkpoint, progress)
    assert progress.total == 3 and scorer.candidates == 3 * 3 * 6  # generations 2, 3 and 4 only
    assert resumed.best_generation == expected.best_generation
    assert torch.equal(resumed.best_keep, expected.best_keep)
    assert torch.equal(resumed.populations, expected.populations)
    assert resumed.candidates == expected.candidates == 5 * 3 * 6
