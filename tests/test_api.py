"""The Python API (``bench.run``, ``bench.results``, ``bench.compare``): the CLI's numbers, options and errors."""

from __future__ import annotations

import inspect
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from console import invoker, run_main

import bench
from bench.errors import UsageError
from bench.grid.options import OPTIONS
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLI_GRID = ["--methods", "standard,mwt", "--models", TINY_MODEL, "--datasets", TINY_DATASET, "--tasks", "0,1",
            *(a for s in TINY_SETTINGS for a in ("--set", s)), "--workers", "1", "--quiet"]
SETTINGS = {k: int(v) for k, v in (s.split("=") for s in TINY_SETTINGS)}
API_GRID = {"methods": ["standard", "mwt"], "models": [TINY_MODEL], "datasets": [TINY_DATASET], "tasks": [[0, 1]],
            "set": SETTINGS, "workers": 1, "quiet": True}
TIMED = ("train_seconds", "latency_ratio", "latency_ratio_b1", "cost_ratio")  # wall-clock figures: never equal twice


@pytest.fixture
def cli(monkeypatch, capsys):
    return invoker(capsys, monkeypatch)


@pytest.fixture(scope="module")
def both(tmp_path_factory, tiny_standard) -> tuple[Path, list[dict]]:
    """The same tiny grid run by ``bench run`` into one folder and by ``bench.run`` into another (each starting from
    a copy of the session's tiny standard model)."""
    root = tmp_path_factory.mktemp("api")
    tiny_standard.copy_to(root / "cli")
    tiny_standard.copy_to(root / "api")
    assert run_main(["run", *CLI_GRID, "--out", root / "cli"]) == 0
    records = bench.run(**API_GRID, out=root / "api")
    return root / "cli", records


def figures(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's computed numbers, wall-clock ones left out, in a stable row order."""
    numbers = frame.select_dtypes("number").drop(columns=[c for c in frame if c.startswith(TIMED)])
    return numbers.assign(method=frame["method"]).sort_values("method", ignore_index=True)


def test_the_api_and_the_cli_give_the_same_numbers(both):
    cli_runs, records = both
    assert [r["error"] for r in records] == [None, None]
    from_cli, from_api = bench.results(cli_runs), bench.results(records)
    assert list(from_cli.columns) == list(from_api.columns)
    assert sorted(from_api["method"]) == ["mwt", "standard"]
    assert from_api["module_acc_mean"].notna().all() and from_api["cohesion_mean"].notna().all()
    pd.testing.assert_frame_equal(figures(from_cli), figures(from_api))


def test_results_is_the_csv_report(both, cli):
    cli_runs, _ = both
    report = cli("report", "--runs", cli_runs, "--format", "csv")
    assert report.code == 0
    csv = pd.read_csv(StringIO(report.out))
    frame = bench.results(cli_runs)
    assert list(frame.columns) == list(csv.columns)
    pd.testing.assert_frame_equal(frame.select_dtypes("number").reset_index(drop=True),
                                  csv[frame.select_dtypes("number").columns], check_dtype=False)


def test_per_task_rows_and_compare_give_the_report_compare_figures(both, cli):
    cli_runs, records = both
    rows = bench.results(records, per_task=True)
    assert list(rows["task"]) == ["0,1", "0,1"] and "cfg:epochs" in rows
    report = cli("report", "--runs", cli_runs, "--format", "csv", "--compare", "mwt,standard")
    printed = pd.read_csv(StringIO(report.out)).query("figure not in @TIMED")
    assert len(printed) >= 5
    for source in (rows, records, cli_runs, str(cli_runs)):
        diffs = bench.compare(source, "mwt", "standard").query("figure not in @TIMED")
        assert list(diffs["figure"]) == list(printed["figure"])
        assert list(diffs["pairs"]) == list(printed["pairs"])
        assert list(diffs["mean_diff"]) == pytest.approx(list(printed["mean_diff"]), abs=1e-12)


def test_compare_refuses_the_summary(both):
    with pytest.raises(UsageError, match="per_task=True"):
        bench.compare(bench.results(both[1]), "mwt", "standard")


@pytest.mark.parametrize("argv, kwargs", [
    (["--methods", "mwtt"], {"methods": ["mwtt"]}),
    (["--models", "vgg61"], {"models": ["vgg61"]}),
    (["--tasks", "0"], {"tasks": [[0]]}),
    (["--tasks", "0,x"], {"tasks": ["0,x"]}),
    (["--seeds", "99999999999"], {"seeds": [99999999999]}),
    (["--thresholds", "2"], {"thresholds": [2]}),
    (["--set", "epoch=3"], {"set": {"epoch": 3}}),
    (["--set", "mwt.alpah=1"], {"set": {"mwt": {"alpah": 1}}}),
    (["--executor", "mpi"], {"executor": "mpi"}),
    (["--methods", ""], {"methods": []}),
])
def test_bad_arguments_raise_the_line_the_cli_prints(cli, tmp_path, argv, kwargs):
    base = {"methods": ["mwt"], "models": [TINY_MODEL], "datasets": [TINY_DATASET], "quiet": True}
    printed = cli("run", "--methods", "mwt", "--models", TINY_MODEL, "--datasets", TINY_DATASET, "--quiet",
                  "--out", tmp_path / "cli", *argv)
    assert printed.code == 2
    with pytest.raises(UsageError) as raised:
        bench.run(**{**base, **kwargs}, out=tmp_path / "api")
    assert printed.one_line_error() == f"error: {raised.value}"
    assert not (tmp_path / "api").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"method": ["mwt"]}, "unknown option 'method'; did you mean 'methods'?"),
    ({"seeds": {"a": 1}}, "option 'seeds' must be a list"),
    ({"quiet": "yes"}, "option 'quiet' must be true or false"),
    ({"set": "epochs=1"}, "option 'set' must be a table (a dict in Python)"),
    ({"tasks": [[0, 1], {"a": 1}]}, "option 'tasks': cannot read task"),
])
def test_python_values_of_the_wrong_kind_are_one_line_errors(kwargs, message):
    with pytest.raises(UsageError) as raised:
        bench.run(**kwargs)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_every_run_option_is_a_keyword_of_run():
    """The keywords come from the one declaration: an option added there reaches bench.run unchanged."""
    parameters = inspect.signature(bench.run).parameters
    assert list(parameters) == ["config", *OPTIONS]
    for name in OPTIONS:
        assert f"      {name}: " in bench.run.__doc__


def test_the_api_is_exported_from_bench():
    for name in ("run", "results", "compare"):
        assert name in bench.__all__ and callable(getattr(bench, name))


@pytest.mark.parametrize("sweep", [{"nemo.alpha": [0.5, 1.5]}, {"nemo": {"alpha": (0.5, 1.5)}}])
def test_a_list_or_tuple_in_set_is_a_sweep_as_on_the_command_line(sweep):
    from bench.grid.config import grid_from_options
    from bench.grid.options import merge_options, python_options

    api = grid_from_options(merge_options(python_options({"set": {"epochs": 2, **sweep}, "tasks": [(0, 1)]}), {}))
    cli = grid_from_options(merge_options({"set": ("epochs=2", "nemo.alpha=0.5,1.5"), "tasks": ("0,1",)}, {}))
    assert api.overrides == cli.overrides and api.overrides.axes() == [("nemo.alpha", (0.5, 1.5))]
    assert api.tasks == cli.tasks == ((0, 1),)
