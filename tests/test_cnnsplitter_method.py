"""CNNSplitter end to end through the runner, on a tiny grid with a scaled-down search."""

from __future__ import annotations

import pytest
import torch

from bench.errors import UsageError
from bench.pipeline.runner import run_grid
from methods.cnnsplitter import CNNSplitterHparams

TINY_SEARCH = ("cnnsplitter.population=4", "cnnsplitter.generations=2", "cnnsplitter.parents=2",
               "cnnsplitter.elites=1", "cnnsplitter.beam_min=4", "cnnsplitter.active_min=0.8",
               "cnnsplitter.active_max=1.0")


def test_cnnsplitter_runs_from_the_standard_model_and_records_both_reuse_forms(tiny_grid):
    records = run_grid(tiny_grid(methods="standard,cnnsplitter", sets=TINY_SEARCH, tasks=((1, 2, 3),)))
    by_method = {r["method"]: r for r in records}
    assert all(r["error"] is None for r in records)
    splitter, standard = by_method["cnnsplitter"], by_method["standard"]
    assert splitter["model_metrics"]["test_acc"] == standard["model_metrics"]["test_acc"]  # the same model
    figures = splitter["modularization"]["method_metrics"]
    assert figures["candidates_per_second"] > 0 and figures["generations"] == 2
    assert figures["candidates"] == 3 * 4 * 4  # 3 evaluations of 4 solutions for each of 4 classes
    for task in splitter["tasks"]:
        assert task["retention_sum"] >= task["retention"]
        assert 0 <= task["module_acc_before_finetune"] <= 1 and 0 <= task["module_acc"] <= 1
        assert task["flops_merged"] > 0 and task["params_merged"] > 0  # the modules' union, besides their sum


def test_search_settings_are_checked_in_one_line():
    with pytest.raises(UsageError, match="elites"):
        CNNSplitterHparams(population=10, elites=10)
    with pytest.raises(UsageError, match="beam_max"):
        CNNSplitterHparams(beam_min=10, beam_max=5)


def test_batchnorm_recalibration_refits_the_statistics_of_a_pruned_module():
    from torch import nn

    from bench.models.cnn import simcnn
    from bench.modular.batchnorm import recalibrate_batchnorm

    torch.manual_seed(0)
    model = simcnn(4, width=0.125).eval()
    batches = [(torch.randn(16, 3, 32, 32) * 2 + 1, torch.zeros(16, dtype=torch.long)) for _ in range(3)]
    assert recalibrate_batchnorm(model, batches) == 13 and not model.training
    norm = model.features[0].bn
    images = torch.cat([x for x, _ in batches])
    conv_out = model.features[0].conv(images)
    assert torch.allclose(norm.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-4)  # the average of the batches
    assert norm.momentum == 0.1
    assert recalibrate_batchnorm(nn.Sequential(nn.Linear(3, 3)), batches) == 0


def test_candidates_a_scoring_pass_takes_by_device():
    auto, fixed = CNNSplitterHparams(), CNNSplitterHparams(samples_per_pass=512)
    assert auto.samples_per_pass_on(torch.device("cuda"), 144) == 4096  # many candidates stacked on a GPU
    assert auto.samples_per_pass_on(torch.device("cpu"), 144) == 144  # one candidate a pass on a CPU
    assert fixed.samples_per_pass_on(torch.device("cuda"), 144) == fixed.samples_per_pass_on(torch.device("cpu"), 9)
