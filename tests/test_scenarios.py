"""The patching scenario and the composition across models, end to end on a tiny grid of two seeds.

The weak model never sees class 1 (``without=1``), so it cannot recognise it; the strong models
learned it, and patching with their module of class 1 must give the class back.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench.cli import cli
from bench.grid.scenarios import PatchSettings, Scenarios
from bench.pipeline.cell import CellRunner
from bench.pipeline.progress import Bars
from bench.pipeline.runner import plan, run_grid
from bench.pipeline.workspace import Workspace
from bench.plugins.manager import get_plugins
from bench.record import read_composition, read_record
from bench.testing import DummyMethod, MethodPlugin, make_tiny_grid, use_plugin

PATCH = PatchSettings(without=1, fraction=0.25, epochs=5)
TASKS = ((0, 1),)
SETS = ("epochs=2", "batch_size=16", "finetune_epochs=0")  # seed 0's standard model learns every class


def grid_of(out: Path, patch: PatchSettings | None = PATCH):
    return make_tiny_grid(out, methods="dummy", seeds=(0, 1), sets=SETS, tasks=TASKS,
                          scenarios=Scenarios(patch))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_torch_thread) -> Path:
    """Standard and the dummy method, seeds 0 and 1, patched (classes 0 and 1) and composed across the seeds."""
    out = tmp_path_factory.mktemp("scenarios") / "runs"
    with use_plugin(MethodPlugin(DummyMethod()), "test-dummy"):
        records = run_grid(grid_of(out))
    assert len(records) == 4 and all(r["error"] is None for r in records)
    return out


def records_of(runs: Path) -> list[dict]:
    return [read_record(path) for path in sorted(runs.rglob("record.json"))]


def entry(record: dict, label: int, strategy: str) -> dict:
    return next(e for e in record["patching"]["entries"] if e["label"] == label and e["strategy"] == strategy)


def test_patching_gives_back_the_class_the_weak_model_never_saw(runs):
    for record in records_of(runs):
        patching = record["patching"]
        assert patching["settings"] == PATCH.values()
        assert {(e["label"], e["strategy"]) for e in patching["entries"]} == {
            (label, strategy) for label in (0, 1) for strategy in ("replace", "calibrate")}
        if record["method"] != "standard" or record["seed"] != 0:
            continue
        assert record["model_metrics"]["test_acc"] > 0.9  # the strong model learned every class
        replaced, calibrated = entry(record, 1, "replace"), entry(record, 1, "calibrate")
        for patched in (replaced, calibrated):
            assert patched["weak_recall"] == 0.0 and patched["weak_f1"] == 0.0  # never predicted
            assert patched["acc"] > patched["weak_acc"]
        # the column replaced: what the module claims is class 1, but the weak model's confident softmax keeps some
        assert replaced["precision"] >= 0.9 and replaced["f1"] >= 0.4, replaced
        assert calibrated["f1"] >= 0.9, calibrated  # the calibration layer learns to trust the module
    weak_models = list(runs.rglob("weak-model/*/model.json"))
    assert len(weak_models) == 2  # one per seed, shared by the methods


def test_a_composition_across_the_seeds_of_each_method(runs):
    paths = sorted(runs.rglob("composition.json"))
    assert len(paths) == 2
    for path in paths:
        composition = read_composition(path)
        assert [m["seed"] for m in composition["members"]] == [0, 1]
        assert [c["label"] for c in composition["choices"]] == [0, 1, 2, 3]
        for choice in composition["choices"]:  # the member whose module ranks its class best on validation
            assert 0 <= choice["member"] < 2 and 0 <= choice["val_auc"] <= 1
        assert 0 <= composition["composed_acc"] <= 1
        ids = {m["run_id"] for m in composition["members"]}
        assert ids <= {r["run_id"] for r in records_of(runs) if r["method"] == composition["method"]}
    code = CliRunner().invoke(cli, ["show", str(paths[0])])
    assert code.exit_code == 0 and "module of each class" in code.output and "val_auc" in code.output


def test_the_report_shows_both_scenarios_in_every_format(runs):
    for fmt, heading in (("md", "### Patching a weak model"), ("html", "<h2>Patching a weak model</h2>"),
                         ("latex", "\\paragraph{Patching a weak model}"), ("table", "Patching a weak model")):
        result = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["report", "--runs", str(runs), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert heading in result.output and "Modules composed across models" in result.output, fmt
        assert "calibrate (MODA)" in result.output or fmt == "table"
    patch = CliRunner().invoke(cli, ["report", "--runs", str(runs), "--format", "csv", "--table", "patch"])
    table = pd.read_csv(StringIO(patch.output))
    assert sorted(zip(table["method"], table["strategy"], strict=True)) == [
        ("dummy", "calibrate"), ("dummy", "replace"), ("standard", "calibrate"), ("standard", "replace")]
    assert (table["classes"] == 2).all() and (table["n"] == 2).all()
    assert ((table["f1_mean"] - table["weak_f1_mean"]) * 100 - table["f1_gain_mean"]).abs().max() < 1e-9
    composed = CliRunner().invoke(cli, ["report", "--runs", str(runs), "--format", "json", "--table", "composition"])
    rows = json.loads(composed.output)
    assert {row["method"] for row in rows} == {"dummy", "standard"} and all(row["members"] == 2 for row in rows)
    compared = CliRunner().invoke(cli, ["report", "--runs", str(runs), "--compare", "standard,dummy",
                                        "--format", "csv"])
    figures = set(pd.read_csv(StringIO(compared.output))["figure"])
    assert {"patch_f1_replace", "patch_acc_calibrate"} <= figures


def test_show_lists_the_patched_classes(runs):
    path = next(runs.rglob("record.json"))
    result = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["show", str(path)])
    assert result.exit_code == 0 and "patched classes" in result.output and "calibrate" in result.output


def test_a_rerun_recomputes_nothing_and_keeps_the_patching_without_the_scenario(runs):
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("patch-*.json")}
    with use_plugin(MethodPlugin(DummyMethod()), "test-dummy"):
        again = run_grid(grid_of(runs))
        assert {p: p.stat().st_mtime_ns for p in runs.rglob("patch-*.json")} == stamps
        without = run_grid(grid_of(runs, patch=None))
        assert all(r["patching"]["settings"] == PATCH.values() for r in without)
        other = grid_of(runs, PatchSettings(without=1, fraction=0.25, epochs=5, calibration_epochs=2))
        grid, cells = plan(other)
        runner = CellRunner(Workspace(grid, get_plugins(), torch.device("cpu"), Bars(quiet=True)))
        recorded = [cell for cell in cells if cell.record]
        assert all(runner.finished(cell) is None for cell in recorded)  # other settings: not finished
        assert all(runner.finished(cell) for cell in plan(grid_of(runs))[1] if cell.record)
    assert [r["patching"] for r in again] == [r["patching"] for r in without]


def test_seams_class_modules_each_search_their_own_one_vs_rest_task(tmp_path, one_torch_thread):
    """SeaM's module of class c is its re-engineering for the binary task c vs the rest, searched in the checkpoint
    of the task ``(c,)``: each ranks its class above the others on the validation images. (A one-output head
    trained by cross-entropy over one output learns nothing, and the modularize stage's one search file handed
    every class the finished search of class 0.)"""
    runs = tmp_path / "runs"
    records = run_grid(make_tiny_grid(runs, methods="seam", sets=(*SETS, "seam.epochs=3"), tasks=((0, 1, 2, 3),),
                                      scenarios=Scenarios(PATCH)))
    assert all(r["error"] is None for r in records)
    assert len(list(runs.rglob("seam/*/t*/compose-*-search.json"))) == 5  # the task (0, 1, 2, 3), each (c,)
    for label in range(4):
        (outputs,) = runs.rglob(f"seam/*/t*/c*/{label}.json")
        assert json.loads(outputs.read_text())["info"]["val_auc"] >= 0.9, label


@pytest.mark.slow
def test_every_registered_method_patches_and_composes_across_seeds(tmp_path, one_torch_thread):
    """The scenarios take a method's modules through the Method protocol only: every registered method runs them."""
    methods = [name for name in get_plugins().methods.match("*") if name != "standard"]
    tiny_search = ("cnnsplitter.population=4", "cnnsplitter.generations=2", "cnnsplitter.parents=2",
                   "cnnsplitter.elites=1", "cnnsplitter.beam_min=4")
    sets = ["epochs=3", *(tiny_search if "cnnsplitter" in methods else ())]
    grid = make_tiny_grid(tmp_path / "runs", methods=",".join(methods), seeds=(0, 1), sets=sets, tasks=TASKS,
                          scenarios=Scenarios(PATCH))
    records = run_grid(grid)
    assert {r["method"] for r in records} == {"standard", *methods}
    for record in records:
        assert record["error"] is None, record["error"]
        assert len(record["patching"]["entries"]) == 4, record["method"]  # classes 0 and 1, both strategies
    compositions = [read_composition(p) for p in (tmp_path / "runs").rglob("composition.json")]
    assert {c["method"] for c in compositions} == {"standard", *methods}
