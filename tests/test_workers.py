"""Local worker processes (``--workers``): how many, their threads, a real pooled grid, and the same numbers
as a cell computed in this process."""

import pytest
import torch

from bench.errors import UsageError
from bench.pipeline import executors
from bench.pipeline.runner import run_grid
from bench.pipeline.worker import CORES, MAX_AUTO_WORKERS, plan_workers
from bench.testing import make_tiny_grid

FIGURES = ("module_acc", "module_acc_before_finetune", "retention", "params", "flops")


def test_auto_is_one_worker_per_core_on_a_cpu_and_one_on_a_gpu():
    workers = plan_workers("auto", torch.device("cpu"))
    assert workers.count == min(CORES, MAX_AUTO_WORKERS)
    assert workers.threads == max(1, CORES // workers.count)
    assert plan_workers("auto", torch.device("cuda")).count == 1
    assert plan_workers("auto", torch.device("cuda")).threads == 0  # a GPU's host threads are left alone


def test_a_given_count_divides_the_cores():
    assert plan_workers("1", torch.device("cpu")).threads == CORES
    assert plan_workers(3, torch.device("cpu")).count == 3
    assert plan_workers("64", torch.device("cpu")).threads == 1


@pytest.mark.parametrize("bad", ["0", "-2", "many", "1.5"])
def test_a_bad_count_is_one_line(bad):
    with pytest.raises(UsageError, match="--workers"):
        plan_workers(bad, torch.device("cpu"))


def _figures(record: dict) -> list:
    return [record["model_metrics"]["test_acc"], *[[task[k] for k in FIGURES] for task in record["tasks"]]]


def test_a_pooled_grid_writes_every_record_skips_finished_cells_and_matches_this_process(tmp_path, monkeypatch):
    grid = make_tiny_grid(tmp_path / "pooled", methods="standard,mwt")
    records = run_grid(grid, "local", executor_options={"workers": 2})
    assert sorted(r["method"] for r in records) == ["mwt", "standard"]
    assert all(r["error"] is None for r in records)
    threads = max(1, CORES // 2)
    assert {r["env"]["threads"] for r in records} == {threads}

    def refuse(self, cells, runner):
        raise AssertionError(f"finished cells went to the workers again: {[c.label for c in cells]}")

    monkeypatch.setattr(executors.PoolExecutor, "run", refuse)
    again = run_grid(grid, "local", executor_options={"workers": 2})
    assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in records)

    alone = run_grid(make_tiny_grid(tmp_path / "alone", methods="standard"), "local",
                     executor_options={"workers": 2})  # one cell: computed here, on the threads a worker had
    pooled = next(r for r in records if r["method"] == "standard")
    assert alone[0]["env"]["threads"] == threads
    assert _figures(alone[0]) == _figures(pooled)
