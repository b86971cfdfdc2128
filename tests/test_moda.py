"""MODA: its loss and module rule on hand-computed cases, its activations, and a tiny grid end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.models.cnn import simcnn
from bench.models.vit import vit_s
from bench.modular.activity import floored_modules
from bench.modular.masking import attach_generators, current_masks, maskable_units
from bench.modular.signals import UnitRecorder, activation_units
from bench.pipeline.runner import run_grid
from bench.protocol.modules import ActivityStats
from bench.report.export import export_module
from methods.moda import MODAHparams, moda_loss


def test_moda_loss_hand_computed():
    labels = torch.tensor([0, 0, 1])
    first = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # cosines: s01 = 1/sqrt2, s02 = 0, s12 = 1/sqrt2
    second = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])  # s01 = 0, s02 = 1, s12 = 0
    affinity = (1 / math.sqrt(2) + 0) / 2  # same-class pair (0, 1), per layer, then the mean over layers
    dispersion = ((0 + 1 / math.sqrt(2)) / 2 + (1 + 0) / 2) / 2  # pairs (0, 2), (1, 2)
    compactness = (4 / 6 + 6 / 9) / 2  # L1 / count per layer, then the mean over layers
    hparams = MODAHparams(alpha=1.0, beta=0.5, gamma=0.3)
    loss, logs = moda_loss([first, second], labels, hparams)
    assert logs["affinity_loss"].item() == pytest.approx(1 - affinity)
    assert logs["dispersion_loss"].item() == pytest.approx(dispersion)
    assert logs["compactness_loss"].item() == pytest.approx(compactness)
    assert loss.item() == pytest.approx(1 - affinity + 0.5 * dispersion + 0.3 * compactness)
    assert logs["unit_rate"].item() == pytest.approx((4 / 6 + 3 / 9) / 2)


def test_the_loss_pulls_a_class_together_and_pushes_classes_apart():
    labels = torch.tensor([0, 0, 1, 1])
    separate = [torch.tensor([[1.0, 1, 0, 0]] * 2 + [[0.0, 0, 1, 1]] * 2)]
    shared = [torch.ones(4, 4) * 0.5]  # the same L1 per sample
    hparams = MODAHparams()
    assert moda_loss(separate, labels, hparams)[0] < moda_loss(shared, labels, hparams)[0]
    activations = torch.rand(4, 6, requires_grad=True)
    moda_loss([activations], labels, hparams)[0].backward()
    assert activations.grad is not None and activations.grad.abs().sum() > 0


def test_a_conv_channel_counts_as_its_mean_post_relu_activation():
    torch.manual_seed(0)
    model = simcnn(4, width=0.125)
    named = activation_units(model)
    assert [n for n, _ in named] == [f"features.{i}" for i in (1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16)]
    x = torch.randn(3, 3, 32, 32)
    with UnitRecorder(named) as recorder:
        model(x)
        signals = recorder.last()
    with torch.no_grad():
        by_hand = F.relu(model.features[:2](x)).abs().mean(dim=(2, 3))  # (batch, channels) of features.1
    torch.testing.assert_close(signals[0].detach(), by_hand)
    assert len(signals) == len(named) and signals[0].requires_grad  # the loss reaches the weights
    assert not model.features[1]._forward_hooks  # the recorder took its hooks off


def test_the_recorder_reads_a_masked_unit_s_activity_from_its_mask():
    torch.manual_seed(0)
    model = attach_generators(simcnn(4, width=0.125))
    named = maskable_units(model)
    with UnitRecorder(named, read="activity") as activity, UnitRecorder(named) as signal:
        model(torch.randn(3, 3, 32, 32))
        masks = current_masks(model)
        assert all(torch.equal(a, m > 0) for a, m in zip(activity.last(), masks, strict=True))
        assert all(s.dtype == torch.float32 and (s >= 0).all() for s in signal.last())
    with pytest.raises(ValueError, match="read must be one of signal, activity"):
        UnitRecorder(named, read="masks")


def test_on_a_vit_moda_shapes_the_mlp_neurons_of_every_masked_block():
    torch.manual_seed(0)
    model = vit_s(4, width=0.125, depth=3)
    named = activation_units(model)
    assert [n for n, _ in named] == ["blocks.1.mlp.fc1", "blocks.2.mlp.fc1"]
    x = torch.randn(2, 3, 32, 32)
    with UnitRecorder(named) as recorder:
        model(x)
        (first, _) = recorder.last()
    with torch.no_grad():
        tokens = model.blocks[0](model.tokens(x))
        block = model.blocks[1]
        tokens = tokens + block.attn(block.norm1(tokens))
        by_hand = F.relu(block.mlp.fc1(block.norm2(tokens)).mean(dim=1))  # (batch, neurons)
    torch.testing.assert_close(first.detach(), by_hand)


def stats(rates: list[list[float]], sizes: list[int]) -> ActivityStats:
    """Activity statistics of 100 samples a class whose frequencies are ``rates`` (classes, units)."""
    counts = (torch.tensor(rates) * 100).round().long()
    return ActivityStats([f"layer{i}" for i in range(len(sizes))], sizes, counts, torch.full((len(rates),), 100),
                         torch.zeros(0, sum(sizes), dtype=torch.bool), torch.zeros(0, dtype=torch.long))


def test_floor_tops_a_class_up_to_the_largest_class_module_of_the_layer_by_rate():
    rates = [[0.95, 0.9, 0.92, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0],  # three units at 0.9, as many as any class
             [0.2, 0.5, 0.3, 0.8, 0.1, 0.0, 0.0, 0.3, 0.0, 1.0],  # none: topped up to 3, by rate
             [0.0, 0.0, 0.0, 0.0, 0.95, 0.5, 0.5, 0.6, 0.0, 1.0]]  # one, under the floor of 2: topped up to 3
    masks, topped_up = floored_modules(stats(rates, [8, 2]), threshold=0.9, floor=0.25, layers=["layer0"])
    kept = [set(m[:8].nonzero().flatten().tolist()) for m in masks]
    assert kept == [{0, 1, 2}, {3, 1, 2}, {4, 7, 5}]  # class 2: 0.6, then the lower of two 0.5s
    assert masks[:, 8:].all() and topped_up == [2, 0]  # layer1 is not shaped by MODA: whole
    masks, topped_up = floored_modules(stats(rates, [8, 2]), threshold=0.9, floor=0.005)
    assert masks[2, :8].sum() == 1 and topped_up == [1, 0]  # the authors' 0.5%: at least one unit a layer
    assert masks[1, 8:].tolist() == [False, True] and masks[0, 8:].all()


def test_hyperparameters_are_checked():
    with pytest.raises(ValueError, match=r"gamma must be at least 0, got -0\.1"):
        MODAHparams(gamma=-0.1)
    with pytest.raises(ValueError, match="floor is a share of a layer"):
        MODAHparams(floor=2.0)
    assert MODAHparams() == MODAHparams(alpha=1.0, beta=1.0, gamma=0.3, floor=0.005)


@pytest.mark.usefixtures("one_torch_thread")
def test_moda_runs_end_to_end_in_fp32_and_its_module_exports(tiny_grid, tmp_path):
    """fp32 here; bf16 autocast on a CNN, a ViT and a DeiT, with their exports, in tests/test_precision.py."""
    grid = tiny_grid(methods="moda", sets=["precision=fp32"])
    (record,) = [r for r in run_grid(grid) if r["method"] == "moda"]  # the runner records the baseline too
    assert record["error"] is None and record["precision"] == "fp32"
    assert {"affinity_loss", "dispersion_loss", "compactness_loss"} <= set(record["train_history"][0])
    assert "floor_topups" in record["modularization"]["method_metrics"]
    (task,) = record["tasks"]
    assert task["weight_retention"] < 1 and 0 <= task["module_acc"] <= 1
    out = export_module(record, (0, 1), tmp_path / "module.pt2", grid.out)
    logits = torch.export.load(str(out)).module()(torch.rand(3, 3, 32, 32))
    assert logits.shape == (3, 2)
