"""A failed baseline is never silent: a standard model trained with a learning rate too small to learn is
flagged in every record, in ``bench run``'s warning line naming the cell and in its table, and in ``bench
report`` (md: a column and a footnote; csv: the flag)."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.record import read_record
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STALLED = "lr=1e-6"  # one epoch at this rate leaves the standard model where it started: at chance
DATASET = "synthetic:classes=4,size=256,test_size=64"  # TINY_DATASET as cells and reports name it
CELL = f"mwt / {TINY_MODEL} / {DATASET} / seed 0"
FOOTNOTE = "Baseline flag 'chance': the standard model scored"


@dataclass
class Output:
    """What one ``bench`` command printed, and its exit code."""

    code: int
    out: str
    err: str


def bench(*args: object) -> Output:
    """``bench ARGS`` in process, as the console script runs it, on a terminal wide enough for one log record
    per line."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setenv("COLUMNS", "400")
        patch.setattr(sys, "argv", ["bench", *map(str, args)])
        try:
            main()
        except SystemExit as exit_info:
            return Output(exit_info.code, out.getvalue(), err.getvalue())
    raise AssertionError("bench.cli.main returned without sys.exit")


@pytest.fixture(scope="module")
def stalled(tmp_path_factory) -> tuple[Path, Output]:
    """``bench run`` of mwt (and so of its standard baseline) at a learning rate that cannot learn."""
    runs = tmp_path_factory.mktemp("stalled") / "runs"
    sets = [arg for setting in (*TINY_SETTINGS, STALLED) for arg in ("--set", setting)]
    run = bench("run", "--methods", "mwt", "--models", TINY_MODEL, "--datasets", TINY_DATASET, "--tasks", "0,1",
                "--device", "cpu", "--out", runs, *sets)
    assert run.code == 0, run.err
    return runs, run


def test_every_record_carries_the_flag(stalled):
    runs, _ = stalled
    records = {r["method"]: r for r in map(read_record, runs.rglob("record.json"))}
    assert sorted(records) == ["mwt", "standard"]
    for record in records.values():
        baseline = record["baseline"]
        assert baseline["flag"] == "chance"
        assert baseline["standard_test_acc"] == records["standard"]["model_metrics"]["test_acc"] < 1.5 / 4
        assert "near chance (25.0% for 4 classes)" in baseline["message"]


def test_bench_run_warns_in_a_line_naming_the_cell(stalled):
    _, run = stalled
    warnings = [line for line in run.err.splitlines() if "the standard baseline looks failed" in line]
    assert any(CELL in line and "WARNING" in line and "near chance" in line for line in warnings), run.err
    assert any(f"standard / {TINY_MODEL} / {DATASET}" in line for line in warnings)  # the baseline's own cell too
    assert FOOTNOTE in " ".join(run.out.split())  # the table bench run prints: its footnote, unwrapped
    assert "One seed per row" in run.out


def test_bench_report_md_has_the_column_and_the_footnote(stalled):
    runs, _ = stalled
    report = bench("report", "--runs", runs, "--format", "md")
    assert report.code == 0, report.err
    header, _, *rows = [line for line in report.out.splitlines() if line.startswith("|")]
    column = [cell.strip() for cell in header.strip("|").split("|")].index("baseline")
    assert [[cell.strip() for cell in row.strip("|").split("|")][column] for row in rows] == ["chance", "chance"]
    assert FOOTNOTE in report.out
    for method in ("mwt", "standard"):
        assert f"{DATASET} / {TINY_MODEL} / {method} (1 of 1 seeds)" in report.out


def test_bench_report_csv_has_the_flag(stalled, tmp_path):
    runs, _ = stalled
    report = bench("report", "--runs", runs, "--format", "csv", "--out", tmp_path / "report.csv")
    assert report.code == 0, report.err
    table = pd.read_csv(tmp_path / "report.csv")
    assert sorted(table["method"]) == ["mwt", "standard"]
    assert table["baseline_flag"].tolist() == ["chance", "chance"]
    assert table["baseline_message"].str.contains("near chance").all()
