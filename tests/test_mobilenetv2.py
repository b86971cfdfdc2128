"""MobileNetV2 in the zoo: every CNN method trains, modularizes and reuses it end to end at a tiny size."""

from __future__ import annotations

import pytest
from test_cnnsplitter_method import TINY_SEARCH

from bench.pipeline.runner import run_grid

CNN_METHODS = ("standard", "mwt", "nemo", "cnnsplitter", "moda")


@pytest.mark.slow  # five cells of a 57-conv network: about a minute on 2 cores
@pytest.mark.usefixtures("one_torch_thread")
def test_every_cnn_method_runs_on_a_tiny_mobilenetv2(tiny_grid):
    grid = tiny_grid(methods=",".join(CNN_METHODS), models="mobilenetv2:width=0.125", sets=TINY_SEARCH)
    records = {r["method"]: r for r in run_grid(grid)}
    assert sorted(records) == sorted(CNN_METHODS)
    for method, record in records.items():
        assert record["error"] is None, (method, record["error"])
        assert record["modularization"]["units_total"] == records["standard"]["modularization"]["units_total"]
        (task,) = record["tasks"]
        assert task["flops"] > 0 and task["params"] > 0 and 0 <= task["module_acc"] <= 1
    assert records["cnnsplitter"]["modularization"]["method_metrics"]["candidates"] > 0
