"""The cluster executors, run for real: Slurm's path through submitit's local cluster, Ray if installed."""

import pytest

from bench.pipeline.cluster import waves
from bench.pipeline.runner import expand, run_grid
from bench.plugins.manager import get_plugins
from bench.testing import make_tiny_grid


def test_waves_put_dependencies_first(tmp_path):
    grid = make_tiny_grid(tmp_path, methods="mwt,standard", models="deit_s:depth=2,width=0.125")
    cells = expand(grid, get_plugins())
    first, rest = waves(cells)
    assert {c.method for c in first} == {"standard"}
    assert {c.model.name for c in first} == {"resnet18", "deit_s"}  # the teacher, then the standard model
    assert [c.method for c in rest] == ["mwt"]


@pytest.mark.heavy
def test_slurm_executor_runs_cells_as_jobs_and_skips_finished_ones(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    grid = make_tiny_grid(tmp_path / "runs", methods="standard,mwt")
    records = run_grid(grid, "slurm", executor_options={"cluster": "local", "timeout_min": 10})
    assert sorted(r["method"] for r in records) == ["mwt", "standard"]
    assert all(r["error"] is None and len(r["tasks"]) == 1 for r in records)
    logs = list((tmp_path / "runs" / ".slurm").glob("*_log.out"))
    assert len(logs) == 2  # one job per cell

    import submitit

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was submitted again")

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", refuse)
    again = run_grid(grid, "slurm", executor_options={"cluster": "local"})
    assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in records)


@pytest.mark.heavy
def test_ray_executor_runs_cells_as_tasks_and_skips_finished_ones(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    grid = make_tiny_grid(tmp_path / "runs", methods="standard,mwt")
    records = run_grid(grid, "ray")
    assert sorted(r["method"] for r in records) == ["mwt", "standard"]
    assert all(r["error"] is None and r["env"]["device"] for r in records)
    assert len(list((tmp_path / "runs").rglob("record.json"))) == 2

    from bench.pipeline.cluster import RayExecutor

    def refuse(self, cells):
        raise AssertionError(f"finished cells were submitted again: {[c.label for c in cells]}")

    monkeypatch.setattr(RayExecutor, "submit", refuse)
    again = run_grid(grid, "ray")
    assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in records)
