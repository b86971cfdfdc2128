"""The grid ``bench run`` computes when given no grid options: the cells it plans, and each of them run end to end
through the command line with the default methods, tasks, seeds and thresholds, on tiny models and data.

(``tests/test_issue_commands.py``, marked ``slow``, runs the defaults at full size and checks that they learn.)
"""

from __future__ import annotations

from typing import Any

from console import invoker

from bench.grid.config import CellConfig, grid_from_options
from bench.grid.options import merge_options, python_options
from bench.pipeline import worker
from bench.pipeline.latency import latency_ratios
from bench.pipeline.runner import plan
from bench.record import read_record
from bench.testing import TINY_SETTINGS

# every default method on every default model it modularizes: CNNSplitter splits CNNs only, so no vit_s cell
DEFAULT_CELLS = {("standard", "simcnn"), ("mwt", "simcnn"), ("nemo", "simcnn"), ("cnnsplitter", "simcnn"),
                 ("standard", "vit_s"), ("mwt", "vit_s"), ("nemo", "vit_s")}
TINY_MODELS = "simcnn:width=0.125,vit_s:depth=2,width=0.125"  # the default models' families, narrower
TINY_DATA = "synthetic:size=256,classes=5,test_size=64"  # five classes: the default tasks are 0,1 and 2,3,4
TINY_SEARCH = ("cnnsplitter.population=4", "cnnsplitter.parents=2", "cnnsplitter.elites=1", "cnnsplitter.generations=1")


def planned(**options: Any) -> list[CellConfig]:
    """The cells ``bench run`` plans for these options (the others at their defaults), as the command line does."""
    return plan(grid_from_options(merge_options(python_options(options), {})))[1]


def test_the_default_grid_is_seven_cells():
    cells = planned()
    assert len(cells) == 7 and all(cell.record for cell in cells)  # seven records, no dependency cell
    assert {(cell.method, cell.model.name) for cell in cells} == DEFAULT_CELLS
    assert {cell.model for cell in cells} == set(cells[0].grid.models) and cells[0].grid.preset == "smoke"


def test_bench_run_with_the_default_grid_on_tiny_models_writes_a_record_per_cell(monkeypatch, capsys, tmp_path):
    bench = invoker(capsys, monkeypatch)
    monkeypatch.setattr(worker, "CORES", 1)  # in this process on one thread, as a one-core machine runs it
    monkeypatch.setitem(latency_ratios.__kwdefaults__, "max_seconds", 0.01)  # timed briefly: 14 tasks, 4 timings each
    settings = [item for setting in (*TINY_SETTINGS, *TINY_SEARCH) for item in ("--set", setting)]
    result = bench("run", "--models", TINY_MODELS, "--datasets", TINY_DATA, "--workers", "1", "--device", "cpu",
                   *settings, "--out", tmp_path / "runs", "--quiet")
    assert result.code == 0, result.err
    assert "modbench, smoke preset" in result.out and "module acc" in result.out
    records = [read_record(path) for path in sorted((tmp_path / "runs").rglob("record.json"))]
    assert len(records) == len(planned(models=[TINY_MODELS], datasets=[TINY_DATA])) == 7
    assert {(record["method"], record["model"]) for record in records} == DEFAULT_CELLS
    for record in records:
        assert record["error"] is None and record["threshold"] == 0.9 and record["seed"] == 0
        assert [task["classes"] for task in record["tasks"]] == [[0, 1], [2, 3, 4]]

