"""``bench run --dry-run``: every cell listed, finished ones marked done, the rest estimated from timed steps."""

from __future__ import annotations

import io
import math

import pytest
from click.testing import CliRunner
from rich.console import Console

import bench.pipeline.plan
from bench.cli import cli
from bench.pipeline.plan import planned_seconds, print_plan
from bench.pipeline.runner import run_grid
from bench.testing import TINY_DATASET, TINY_MODEL, make_tiny_grid


def test_a_plan_lists_every_cell_and_estimates_the_ones_to_run(tmp_path, monkeypatch):
    timed = {}

    def recorded(r, *args):
        timed[r.method.name] = real(r, *args)
        return timed[r.method.name]

    real = bench.pipeline.plan.step_seconds
    monkeypatch.setattr(bench.pipeline.plan, "step_seconds", recorded)
    grid = make_tiny_grid(tmp_path / "runs", methods="mwt", tasks=((0, 1), (1, 2, 3)))
    planned = print_plan(grid, Console(file=io.StringIO(), width=200))
    assert [(p.cell.method, p.done) for p in planned] == [("standard", False), ("mwt", False)]
    standard, mwt = planned
    assert sorted(timed) == ["mwt", "standard"] and all(seconds > 0 for seconds in timed.values())
    # the tiny data set: 4 classes of 64 training images, 58 each once the validation split is carved; batches of 32
    train_steps = math.ceil(4 * 58 / 32)
    finetune_steps = math.ceil(2 * 58 / 32) + math.ceil(3 * 58 / 32)  # one epoch per task, at the standard's step
    assert standard.seconds == pytest.approx(train_steps * timed["standard"])
    assert mwt.seconds == pytest.approx(train_steps * timed["mwt"] + finetune_steps * timed["standard"])
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

