"""The commands the issues name, run as a researcher types them, with their acceptance checks.

Slow (minutes each on a 2-core CPU): run with ``pytest -m slow``; what these check that tiny sizes can check
(the default grid's cells, each run through ``bench run``) runs in the default suite, tests/test_default_grid.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=3600)


def records(runs: Path, method: str | None = None) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted(runs.rglob("record.json"))]
    return [r for r in found if method is None or r["method"] == method]


def stage_files(runs: Path) -> dict[str, int]:
    """Every stage file (the records aside) with its modification time in nanoseconds."""
    return {str(p): p.stat().st_mtime_ns for p in runs.rglob("*") if p.suffix in (".json", ".pt")
            and p.name != "record.json"}


def by_model(found: list[dict]) -> dict[str, dict]:
    return {r["model"] + json.dumps(r["model_args"], sort_keys=True): r for r in found}


def test_bench_run_with_no_arguments(tmp_path):
    result = bench(tmp_path, "run", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "modbench, smoke preset" in result.stdout and "module acc" in result.stdout
    found = records(tmp_path / "runs")
    assert len(found) == 7 and all(r["error"] is None for r in found)  # the default grid's cells
    for r in records(tmp_path / "runs", "standard"):
        assert r["model_metrics"]["test_acc"] > 0.9


def test_standard_smoke_on_digits_then_cached_rerun(tmp_path):
    args = ("run", "--methods", "standard", "--models", "simcnn:width=0.25", "--datasets", "digits",
            "--preset", "smoke", "--tasks", "0,1", "--quiet")
    assert bench(tmp_path, *args).returncode == 0
    (record,) = records(tmp_path / "runs")
    assert record["model_metrics"]["test_acc"] >= 0.85
    task = record["tasks"][0]
    assert task["standard_acc"] > 0.9 and task["params"] > 0 and task["flops"] > 0
    stages = stage_files(tmp_path / "runs")
    again = bench(tmp_path, *args)
    assert again.returncode == 0
    assert stage_files(tmp_path / "runs") == stages  # every stage loaded, none recomputed or rewritten
    assert records(tmp_path / "runs")[0]["tasks"][0]["module_acc"] == task["module_acc"]


def test_mwt_smoke_on_the_four_cnns(tmp_path):
    models = "simcnn:width=0.25,rescnn:width=0.25,vgg16:width=0.25,resnet18:width=0.25"
    result = bench(tmp_path, "run", "--methods", "mwt", "--models", models, "--datasets", "digits",
                   "--preset", "smoke", "--tasks", "0,1", "--quiet")
    assert result.returncode == 0, result.stderr
    standard = by_model(records(tmp_path / "runs", "standard"))
    found = records(tmp_path / "runs", "mwt")
    assert len(found) == 4
    for r in found:
        module = r["modularization"]
        task = r["tasks"][0]
        model = standard[r["model"] + json.dumps(r["model_args"], sort_keys=True)]["model_metrics"]
        assert module["retention"] < 0.95 and module["cohesion"] > module["coupling"]
        assert task["module_acc"] >= task["standard_acc"] - 0.05
        assert task["params"] < model["params"] and task["flops"] < model["flops"]


@pytest.mark.parametrize("models", ["vit_s:depth=4,width=0.25,simcnn:width=0.25", "deit_s:depth=4,width=0.25"])
def test_nemo_smoke(tmp_path, models):
    result = bench(tmp_path, "run", "--methods", "nemo", "--models", models, "--datasets", "digits",
                   "--preset", "smoke", "--tasks", "0,1", "--quiet")
    assert result.returncode == 0, result.stderr
    for r in records(tmp_path / "runs", "nemo"):
        module, task = r["modularization"], r["tasks"][0]
        assert task["weight_retention"] < 1 and module["cohesion"] > module["coupling"]
        assert task["module_acc"] >= task["standard_acc"] - 0.08
