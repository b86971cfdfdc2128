"""``bench run --dry-run``: every cell listed, finished ones marked done, the rest estimated from timed steps."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from bench.cli import cli
from bench.pipeline.plan import planned_seconds, print_plan
from bench.pipeline.runner import run_grid
from bench.testing import TINY_DATASET, TINY_MODEL, make_tiny_grid


def test_a_plan_lists_every_cell_and_estimates_the_ones_to_run(tmp_path):
    grid = make_tiny_grid(tmp_path / "runs", methods="mwt")
    planned = print_plan(grid, Console(file=io.StringIO(), width=200))
    assert [(p.cell.method, p.done) for p in planned] == [("standard", False), ("mwt", False)]
    assert all(p.seconds > 0 for p in planned)
    standard, mwt = planned
    assert mwt.seconds > 0 and standard.seconds > 0
    assert not list((tmp_path / "runs").rglob("*.json"))  # planning computes and writes nothing

    run_grid(grid)
    again = print_plan(grid, Console(file=io.StringIO(), width=200))
    assert [p.done for p in again] == [True, True]
    assert planned_seconds(again) == {"to_run": 0, "seconds": 0.0, "not_estimated": 0}


def test_dry_run_from_the_command_line(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--dry-run", "--methods", "nemo", "--models", TINY_MODEL,
                                      "--datasets", TINY_DATASET, "--tasks", "0,1", "--set", "epochs=1",
                                      "--out", str(tmp_path / "runs"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "nemo / simcnn:width=0.125" in result.output and "2 cells, 0 done" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_method_is_left_out_of_models_it_cannot_modularize(tmp_path):
    args = ["run", "--dry-run", "--methods", "standard,cnnsplitter", "--datasets", TINY_DATASET, "--tasks", "0,1",
            "--out", str(tmp_path / "runs"), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "--models", f"{TINY_MODEL},vit_s:depth=2,width=0.125"])
    assert result.exit_code == 0, result.output
    assert "cnnsplitter / simcnn:width=0.125" in result.output
    assert "cnnsplitter / vit_s" not in result.output and "standard / vit_s" in result.output

