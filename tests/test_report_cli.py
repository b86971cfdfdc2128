"""``bench report`` and ``bench show`` on a real tiny run and on damaged files: never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from record_factory import make_record, task, write_records

from bench.cli import cli, main
from bench.pipeline.runner import run_grid
from bench.testing import DummyMethod, MethodPlugin, make_tiny_grid, use_plugin

BAD_FILES = {
    "a-list": "[1, 2]",
    "a-string": '"hello"',
    "schema-only": '{"schema": 1}',
    "not-utf8": b"\xff\xfe\xfa",
    "truncated": '{"schema": 2, "run_id": "x", "meth',
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_standard) -> Path:
    """A real tiny grid (standard and the dummy method, one seed, one task) run through ``run_grid``."""
    out = tiny_standard.copy_to(tmp_path_factory.mktemp("report") / "runs")
    with use_plugin(MethodPlugin(DummyMethod()), "test-dummy"):
        records = run_grid(make_tiny_grid(out, methods="dummy"))
    assert [r["error"] for r in records] == [None, None]
    return out


def bench(*args: object) -> tuple[int, str, str]:
    """``bench ARGS`` as the console script runs it: exit code, stdout, stderr."""
    runner = CliRunner(env={"COLUMNS": "250"})
    saved = sys.argv
    sys.argv = ["bench", *map(str, args)]
    try:
        with runner.isolation() as (out, err, _):
            try:
                main()
            except SystemExit as exit_info:
                code = exit_info.code
        return code, out.getvalue().decode(), err.getvalue().decode()
    finally:
        sys.argv = saved


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def with_bad_files(runs: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    for name, content in BAD_FILES.items():
        path = copy / name / "record.json"
        path.parent.mkdir()
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return copy


def test_report_of_a_real_run(runs):
    result = CliRunner().invoke(cli, ["report", "--runs", str(runs), "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(StringIO(result.stdout)).set_index("method")
    assert list(table.index) == ["dummy", "standard"] and (table["n"] == 1).all()
    assert table.loc["standard", "weight_retention_mean"] == 1.0
    assert 0 < table.loc["dummy", "weight_retention_mean"] < 1
    assert (table["preset"] == "smoke").all() and table["config_key"].str.len().eq(12).all()
    shown = CliRunner().invoke(cli, ["report", "--runs", str(runs)])
    assert shown.exit_code == 0 and "dummy" in shown.stdout and "One seed per row" in shown.stdout


def test_compare_on_a_real_run(runs):
    result = CliRunner().invoke(cli, ["report", "--runs", str(runs), "--compare", "dummy,standard", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["figure"]: row for row in json.loads(result.stdout)}
    assert rows["weight_retention"]["mean_diff"] < 0 and rows["weight_retention"]["pairs"] == 1
    assert rows["module_acc"]["verdict"] == "one pair: no interval"


def test_bad_record_files_are_skipped_with_a_warning(runs, tmp_path):
    copy = with_bad_files(runs, tmp_path)
    code, out, err = bench("report", "--runs", copy, "--format", "md")
    assert code == 0 and "| dummy" in out and "Traceback" not in err
    warnings = err.strip().splitlines()
    assert len(warnings) == len(BAD_FILES)
    for name in BAD_FILES:
        (line,) = [w for w in warnings if f"{copy / name / 'record.json'}:" in w]
        assert line.startswith("warning: skipped ")
    assert "recomputed" not in err


def test_only_bad_files_is_one_error_after_the_warnings(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "record.json").write_text("[]")
    code, _, err = bench("report", "--runs", tmp_path)
    assert code == 2 and err.splitlines()[-1].startswith(f"error: no records under {tmp_path}")


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_show_a_bad_file_is_one_line_naming_it(tmp_path, name):
    path = tmp_path / "record.json"
    content = BAD_FILES[name]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = bench("show", path)
    line = one_line_error(err)
    assert code == 1 and out == "" and str(path) in line
    assert "recomputed" not in line and "will be" not in line


def test_show_prints_what_a_record_says_about_itself(tmp_path):
    flagged = make_record("mwt", standard_test_acc=0.12, preset="paper",
                          last_error={"message": "CUDA out of memory", "when": "2026-11-26T10:00:00+00:00"})
    (path,) = write_records(tmp_path, [flagged])
    code, out, err = bench("show", path)
    assert code == 0, err
    for text in ("preset", "paper", "precision", "fp32", "deterministic", "False", "chance", "near chance",
                 "last error", "CUDA out of memory", "2026-11-26T10:00:00+00:00", flagged["config_key"],
                 "cost", "standard_train_seconds", "1.25x"):
        assert text in out, text
    code, out, _ = bench("show", path, "--json")
    assert code == 0 and json.loads(out) == flagged


def test_show_lays_out_a_tasks_controls(tmp_path):
    control = {"module_acc": 0.8125, "module_acc_before_finetune": 0.4375, "finetune_kept": True, "params": 500,
               "weight_retention": 0.5, "flops_ratio": 0.6}
    (path,) = write_records(tmp_path, [make_record("mwt", tasks=[task([0, 1], 0.9, controls={"random": control})])])
    code, out, err = bench("show", path)
    assert code == 0, err
    assert "controls (as many units per layer" in out and "random" in out and "0.8125" in out and "0.4375" in out


def test_show_upgrades_a_schema1_record(tmp_path):
    (path,) = write_records(tmp_path, [make_record("nemo", schema=1)])
    code, out, _ = bench("show", path, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["schema"] == 3 and shown["precision"] == "fp32" and shown["baseline"] is None
    code, out, _ = bench("show", path)
    assert code == 0 and "not recorded" in out


def test_report_out_to_a_folder_or_an_unwritable_place(runs, tmp_path):
    code, _, err = bench("report", "--runs", runs, "--out", tmp_path)
    assert code == 2 and "is a folder" in one_line_error(err)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = bench("report", "--runs", runs, "--format", "md", "--out", blocker / "report.md")
    assert code == 2 and f"--out {blocker / 'report.md'}: cannot write there" in one_line_error(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_report_out_to_a_read_only_folder(runs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = bench("report", "--runs", runs, "--out", locked / "report.txt")
    assert code == 2 and "cannot write there" in one_line_error(err)


def test_report_plots_to_a_file_is_one_line(runs, tmp_path):
    target = tmp_path / "plots.png"
    target.write_text("")
    code, _, err = bench("report", "--runs", runs, "--plots", target)
    assert code == 2 and f"--plots {target} is a file" in one_line_error(err)


def test_report_table_and_plots_to_files(runs, tmp_path):
    code, _, err = bench("report", "--runs", runs, "--out", tmp_path / "table.txt", "--plots", tmp_path / "plots")
    assert code == 0, err
    assert "dummy" in (tmp_path / "table.txt").read_text()
    assert (tmp_path / "plots" / "size_accuracy.png").stat().st_size > 0
    assert f"wrote {tmp_path / 'table.txt'}" in err


def test_compare_errors_are_one_line(runs):
    for argument, message in (("dummy,nosuch", "no records of method 'nosuch'"),
                              ("dummy", "--compare takes two methods"),
                              ("dummy,dummy", "give two different methods")):
        code, _, err = bench("report", "--runs", runs, "--compare", argument)
        assert code == 2 and message in one_line_error(err), argument
