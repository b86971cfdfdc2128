"""Patching and composing across models, the math: hand-computed examples of each rule."""

from __future__ import annotations

import math

import pytest
import torch

from bench.errors import UsageError
from bench.grid.config import grid_from_options
from bench.grid.options import merge_options
from bench.grid.scenarios import PatchSettings
from bench.modular.patching import fit_calibration, joint_outputs, minmax, replace_column
from bench.modular.votes import best_members, standardised_votes
from bench.pipeline.metrics import class_scores, roc_auc
from bench.pipeline.scenarios.composition import score_members
from bench.pipeline.scenarios.outputs import ClassOutputs


def test_minmax_maps_the_range_to_0_1_and_a_flat_range_only_shifts():
    assert minmax(torch.tensor([2.0, 4.0, 6.0]), 2.0, 6.0).tolist() == [0.0, 0.5, 1.0]
    assert minmax(torch.tensor([3.0, 5.0]), 3.0, 3.0).tolist() == [0.0, 2.0]


def test_replace_column_lets_the_module_claim_the_class_the_weak_model_never_predicts():
    weak = torch.tensor([[2.0, 0.0, -9.0], [0.0, 2.0, -9.0], [2.0, 0.0, -9.0]])  # never class 2
    module = torch.tensor([0.0, 1.0, 5.0])  # its logit of class 2; range on class-2 images [1, 5]
    patched = replace_column(weak, module, 2, 1.0, 5.0)
    assert torch.allclose(patched[:, :2], weak.softmax(1)[:, :2])
    assert patched[:, 2].tolist() == [-0.25, 0.0, 1.0]
    assert patched.argmax(1).tolist() == [0, 1, 2]


def test_joint_outputs_drop_the_class_column_and_append_the_module():
    weak = torch.arange(6.0).view(2, 3)
    assert joint_outputs(weak, torch.tensor([7.0, 8.0]), 1).tolist() == [[0.0, 2.0, 7.0], [3.0, 5.0, 8.0]]


def test_the_calibration_layer_learns_to_trust_the_module_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    weak = torch.randn(90, 3, generator=generator) + 3 * torch.nn.functional.one_hot(labels, 3)
    weak[:, 2] = -5.0  # the weak model never says class 2 ...
    weak[labels == 2, 0] += 3.0  # ... and calls its images class 0
    module = torch.where(labels == 2, 4.0, -4.0)  # the strong module knows class 2
    joint = joint_outputs(weak, module, 2)
    layer = fit_calibration(joint, labels, epochs=20, lr=0.05, batch_size=16, seed=1)
    predictions = layer(joint).argmax(1)
    assert class_scores(predictions, labels, 2)["recall"] == 1.0
    assert (predictions == labels).double().mean() > 0.9
    again = fit_calibration(joint, labels, epochs=20, lr=0.05, batch_size=16, seed=1)
    assert torch.equal(again.weight, layer.weight)


def test_the_calibration_does_not_depend_on_the_scale_of_the_module_output():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    weak = torch.randn(60, 3, generator=generator)
    module = torch.where(labels == 2, 1.0, -1.0) + 0.3 * torch.randn(60, generator=generator)
    small = fit_calibration(joint_outputs(weak, module, 2), labels, 10, 0.05, 16, seed=3)
    large = fit_calibration(joint_outputs(weak, 100 * module, 2), labels, 10, 0.05, 16, seed=3)
    predicted = small(joint_outputs(weak, module, 2)).argmax(1)
    assert torch.equal(predicted, large(joint_outputs(weak, 100 * module, 2)).argmax(1))
    assert class_scores(predicted, labels, 2)["recall"] > 0.9  # a module's logit 100x the weak model's: still trusted


def test_class_scores_by_hand_and_zero_where_undefined():
    predictions, labels = torch.tensor([1, 1, 0, 1, 0]), torch.tensor([1, 0, 0, 1, 1])
    scores = class_scores(predictions, labels, 1)  # tp 2, fp 1, fn 1
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert class_scores(torch.zeros(5, dtype=torch.long), labels, 1) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_roc_auc_counts_ties_half():
    scores = torch.tensor([0.9, 0.5, 0.5, 0.1])
    positives = torch.tensor([True, True, False, False])
    assert roc_auc(scores, positives) == pytest.approx((2 + 1 + 0.5) / 4)
    assert math.isnan(roc_auc(scores, torch.ones(4, dtype=torch.bool)))


def test_best_members_take_the_first_on_ties():
    assert best_members(torch.tensor([[0.9, 1.0, 0.5], [0.95, 1.0, 0.4]])) == [1, 0, 0]


def outputs(label: int, test: list[float], auc: float, val: list[float] = (0.0, 1.0)) -> ClassOutputs:
    return ClassOutputs(label, torch.tensor(val), torch.tensor(test), 0.0, 1.0, auc, "sha")


def test_votes_are_standardised_by_the_validation_outputs():
    votes = standardised_votes([torch.tensor([1.0, 3.0]), torch.tensor([10.0, 0.0])],
                               [torch.tensor([0.0, 2.0, 4.0]), torch.tensor([0.0, 20.0])])
    assert torch.allclose(votes, torch.tensor([[-0.5, 0.0], [0.5, -10 / 200**0.5]]))


def test_composing_across_members_takes_each_class_from_its_best_module():
    labels = torch.tensor([0, 1, 1])
    first = [outputs(0, [1.0, 0.5, 0.0], 1.0), outputs(1, [0.0, 0.2, 0.1], 0.6)]  # weak on class 1
    second = [outputs(0, [0.2, 0.9, 0.1], 0.7), outputs(1, [0.0, 10.0, 10.0], 0.9, val=[0.0, 10.0])]
    scored = score_members([first, second], labels)
    assert [c["member"] for c in scored.choices] == [0, 1]
    assert scored.composed_acc == 1.0
    assert scored.own_accs == [pytest.approx(2 / 3), 1.0]  # the first member alone calls image 1 class 0


@pytest.mark.parametrize("values, message", [
    (("pach",), "unknown scenario 'pach'; did you mean 'patch'"),
    (("patch:fraction=1.5",), "fraction must lie between 0 and 1"),
    (("patch:epochs=0",), "epochs must be at least 1"),
    (("patch:colour=red",), "scenario patch has no setting 'colour'"),
])
def test_bad_scenarios_are_one_line_errors(values, message):
    with pytest.raises(UsageError, match=message):
        grid_from_options(merge_options({"scenario": values}, {}))


def test_a_scenario_from_the_command_line_or_a_config_file():
    assert grid_from_options(merge_options({}, {})).scenarios.patch is None
    given = grid_from_options(merge_options({"scenario": ("patch:fraction=0.2,without=3",)}, {}))
    assert given.scenarios.patch == PatchSettings(fraction=0.2, without=3)
    config = grid_from_options(merge_options({}, {"scenario": ["patch:epochs=5"]}))
    assert config.scenarios.patch == PatchSettings(epochs=5)
