"""The command line: help texts, one-line errors with exit codes, and every read-only command on a real run."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from console import invoker, run_main

from bench.cli import cli
from bench.grid.config import read_config_file
from bench.record import as_record
from bench.report.tables import FOOTNOTE
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS, DummyMethod, MethodPlugin, use_plugin

COMMANDS = ("run", "report", "list", "plugins", "show", "export", "import")


@pytest.fixture
def bench(monkeypatch, capsys):
    """Run ``bench ...`` in process and return its exit code, stdout and stderr."""
    return invoker(capsys, monkeypatch)


CONFIG = f"""
models = ["{TINY_MODEL}"]
datasets = "{TINY_DATASET}"
tasks = ["0,1", "2,3"]
device = "cpu"
quiet = true
methods = ["mwt"]  # the command line's --methods wins

[set]
{chr(10).join(TINY_SETTINGS)}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_standard) -> Path:
    """A tiny run made through ``bench run --config`` itself: standard and the dummy method, two tasks."""
    root = tmp_path_factory.mktemp("cli")
    tiny_standard.copy_to(root / "runs", workers="auto")  # bench run's default
    (root / "grid.toml").write_text(CONFIG)
    with use_plugin(MethodPlugin(DummyMethod()), "test-dummy"):
        assert run_main(["run", "--config", root / "grid.toml", "--methods", "dummy", "--out", root / "runs"]) == 0
    return root / "runs"


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_an_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_group_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "Example" in result.output
    for command in COMMANDS:
        assert command in result.output


def test_version(bench):
    result = bench("--version")
    assert result.code == 0 and "0.1.0" in result.out


# ----------------------------------------------------------------------------- bad usage: one line, exit 2


@pytest.mark.parametrize("option, value, expected", [
    ("--methods", "mwtt", "unknown method 'mwtt'; did you mean 'mwt'? (bench list methods)"),
    ("--models", "vgg61", "unknown model 'vgg61'; did you mean 'vgg16'? (bench list models)"),
    ("--datasets", "cifar11", "unknown dataset 'cifar11'; did you mean 'cifar10'? (bench list datasets)"),
])
def test_unknown_names(bench, tmp_path, option, value, expected):
    result = bench("run", option, value, "--out", tmp_path, "--quiet")
    assert result.code == 2
    assert result.one_line_error() == f"error: {expected}"
    assert not (tmp_path / "runs").exists()


def test_unknown_name_through_the_console_script(tmp_path):
    """The real ``bench`` executable: exit status 2 and one line on stderr."""
    script = shutil.which("bench")
    command = [script] if script else [sys.executable, "-c", "from bench.cli import main; main()"]
    env = {**os.environ, "MODBENCH_LOAD_PLUGINS": ""}
    done = subprocess.run([*command, "run", "--methods", "nemmo", "--out", str(tmp_path), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "error: unknown method 'nemmo'; did you mean 'nemo'? (bench list methods)\n"


def test_class_id_out_of_range(bench, tmp_path):
    result = bench("run", "--methods", "standard", "--models", TINY_MODEL, "--datasets", TINY_DATASET,
                   "--tasks", "0,7", "--out", tmp_path / "runs", "--quiet")
    assert result.code == 2
    assert result.one_line_error() == "error: class id 7 is out of range for synthetic (classes 0..3)"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting, expected", [
    ("epoch=3", "unknown setting 'epoch'; did you mean 'epochs'?"),
    ("epochs=many", "bad value for epochs: 'many' is not an int"),
    ("lr=-1", "must be a finite, positive number"),
    ("optimizer=adam", "bad value for optimizer: 'adam' (choose sgd, adamw)"),
    ("mwt.alpah=1", "method mwt has no setting 'alpah'; did you mean 'alpha'?"),
    ("mwt.alpha=big", "bad value for alpha: 'big' is not a float"),
    ("nemo.tau=0.1", "method 'nemo' is not part of this run"),
    ("epochs", "bad --set 'epochs': write key=value"),
])
def test_bad_settings(bench, tmp_path, setting, expected):
    result = bench("run", "--methods", "mwt", "--models", TINY_MODEL, "--datasets", TINY_DATASET,
                   "--set", setting, "--out", tmp_path / "runs", "--quiet")
    assert result.code == 2
    assert expected in result.one_line_error()


def test_bad_model_argument(bench, tmp_path):
    result = bench("run", "--models", "vit_s:heads=3", "--out", tmp_path, "--quiet")
    assert result.code == 2
    assert result.one_line_error() == "error: model 'vit_s' takes no argument 'heads' (it takes: width, depth)"


def test_missing_cifar_files(bench, tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    result = bench("run", "--methods", "standard", "--models", TINY_MODEL, "--datasets", "cifar10",
                   "--data-root", empty, "--out", tmp_path / "runs", "--quiet")
    assert result.code == 2
    line = result.one_line_error()
    assert str(empty / "cifar-10-batches-py") in line and "--download" in line and "--data-root" in line


def test_missing_config_file(bench, tmp_path):
    result = bench("run", "--config", tmp_path / "grid.toml")
    assert result.code == 2
    assert result.one_line_error() == f"error: config file not found: {tmp_path / 'grid.toml'}"


def test_unknown_command(bench):
    result = bench("frobnicate")
    assert result.code == 2 and "No such command 'frobnicate'" in result.err


def test_report_without_runs(bench, tmp_path):
    result = bench("report", "--runs", tmp_path / "nothing")
    assert result.code == 2
    assert result.one_line_error().startswith(f"error: no records under {tmp_path / 'nothing'}")


# ----------------------------------------------------------------------------- listing


def test_list_everything(bench):
    result = bench("list")
    assert result.code == 0
    for name in ("methods", "models", "datasets", "standard", "mwt", "nemo", "vgg16", "vit_s (vit)", "deit_s (deit)",
                 "digits", "synthetic", "cifar100_coarse (cifar20)", "methods.mwt", "bench.models.builtin"):
        assert name in result.out, name


def test_list_models_with_a_wildcard(bench):
    result = bench("list", "models", "vit*")
    assert result.code == 0
    assert "vit_s (vit)" in result.out and "ViT-s: patch 4" in result.out
    for other in ("deit_s", "vgg16", "simcnn", "mwt", "digits"):
        assert other not in result.out


def test_list_shows_families_and_arguments(bench):
    assert "[vit; args: width, depth]" in bench("list", "models", "vit*").out
    assert "[cnn, vit]" in bench("list", "methods").out


def test_list_bad_kind(bench):
    assert bench("list", "modles").code == 2


def test_plugins(bench):
    result = bench("plugins")
    assert result.code == 0
    rows = {line.split("│")[1].strip(): line for line in result.out.splitlines() if line.count("│") >= 3}
    for name, hook in [("methods.mwt", "register_methods"), ("bench.models.builtin", "register_models"),
                       ("bench.data.builtin", "register_datasets")]:
        assert "built-in" in rows[name] and hook in rows[name]


# ----------------------------------------------------------------------------- a finished run


def test_the_run_wrote_its_records(finished):
    paths = sorted(finished.rglob("record.json"))
    assert [p.relative_to(finished).parts[2] for p in paths] == ["dummy", "standard"]
    for path in paths:
        record = json.loads(path.read_text())
        assert record["error"] is None and [t["classes"] for t in record["tasks"]] == [[0, 1], [2, 3]]
        assert record["recipe"]["epochs"] == 1 and record["recipe"]["batch_size"] == 32
        assert record["dataset_args"] == {"classes": 4, "size": 256, "test_size": 64}


def planned(bench, tmp_path, config: str) -> str:
    """What ``bench run --config`` would run (``--dry-run``), for a config file of ``config``."""
    (tmp_path / "grid.toml").write_text(f'models = ["{TINY_MODEL}"]\ndatasets = ["{TINY_DATASET}"]\n' + config)
    result = bench("run", "--config", tmp_path / "grid.toml", "--out", tmp_path / "runs", "--dry-run",
                   "--device", "cpu")
    assert result.code == 0, result.err
    return result.out


def test_config_tasks_as_arrays(tmp_path):
    from bench.grid.config import grid_from_options
    from bench.grid.options import merge_options

    (tmp_path / "grid.toml").write_text('tasks = [[0, 1], [2, 3]]\n')
    grid = grid_from_options(merge_options({}, read_config_file(tmp_path / "grid.toml")))
    assert grid.tasks == ((0, 1), (2, 3))


def test_config_method_settings_as_tables(bench, tmp_path):
    out = planned(bench, tmp_path, 'methods = ["mwt"]\n[set]\nepochs = 1\n[set.mwt]\nalpha = [0.5, 1.0]\n')
    assert "mwt.alpha=0.5" in out and "mwt.alpha=1.0" in out  # a TOML array under [set.mwt] is a sweep
    assert "3 cells, 0 done" in out


def test_config_unknown_key(bench, tmp_path):
    (tmp_path / "grid.toml").write_text('methds = ["mwt"]\nmodels = ["nosuchmodel"]\n')
    result = bench("run", "--config", tmp_path / "grid.toml", "--out", tmp_path / "runs")
    assert result.code == 2 and "methds" in result.one_line_error()


def test_show_a_run(bench, finished):
    (path,) = finished.glob("*/*/dummy/*/t0.9/r*/record.json")
    run_id = str(path.parent.relative_to(finished))
    for target in ([path], [path.parent], [run_id, "--runs", finished]):
        result = bench("show", *target)
        assert result.code == 0, result.err
        for text in ("dummy", "simcnn", "module_acc", "retention", "cohesion", run_id):
            assert text in result.out, (target, text)
    raw = bench("show", path, "--json")
    assert json.loads(raw.out) == as_record(json.loads(path.read_text()))


def test_show_an_unknown_run(bench, finished):
    result = bench("show", "no/such/run", "--runs", finished)
    assert result.code == 2 and "no record at no/such/run" in result.one_line_error()


def test_report_table(bench, finished):
    result = bench("report", "--runs", finished)
    assert result.code == 0
    assert "dummy" in result.out and "standard" in result.out and "module acc" in result.out


def report_text(bench, runs: Path, fmt: str) -> str:
    result = bench("report", "--runs", runs, "--format", fmt)
    assert result.code == 0, result.err
    return result.out


def test_report_md(bench, finished):
    text = report_text(bench, finished, "md")
    assert text.startswith("| dataset")
    assert "| dummy" in text and "| standard" in text and FOOTNOTE in text


def test_report_csv(bench, finished):
    table = pd.read_csv(StringIO(report_text(bench, finished, "csv")))
    assert list(table["method"]) == ["dummy", "standard"]
    assert table.set_index("method").loc["standard", "weight_retention_mean"] == 1.0
    assert 0 < table.set_index("method").loc["dummy", "retention_mean"] < 1


def test_report_json(bench, finished):
    rows = json.loads(report_text(bench, finished, "json"))
    assert [row["method"] for row in rows] == ["dummy", "standard"]
    assert all(row["seeds"] == 1 and row["error"] is None for row in rows)


def test_report_html(bench, finished):
    text = report_text(bench, finished, "html")
    assert "<table" in text and "<td>dummy</td>" in text and FOOTNOTE in html.unescape(text)


def test_report_latex(bench, finished):
    text = report_text(bench, finished, "latex")
    assert "\\begin{tabular}" in text and "dummy" in text and "\\%" in text


def test_report_to_a_file(bench, finished, tmp_path):
    out = tmp_path / "report.md"
    result = bench("report", "--runs", finished, "--format", "md", "--out", out)
    assert result.code == 0 and f"wrote {out}" in result.err
    assert out.read_text() == report_text(bench, finished, "md")


def test_export_writes_a_program_that_scores_like_the_record(tmp_path):
    import torch

    from bench.data.builtin import load_synthetic
    from bench.pipeline.runner import run_grid
    from bench.testing import make_tiny_grid

    grid = make_tiny_grid(tmp_path / "runs", methods="standard,mwt", tasks=((1, 3),))
    records = {r["method"]: r for r in run_grid(grid)}
    data = load_synthetic(size=256, classes=4, test_size=64).task((1, 3))
    images, labels = data.test.x.float() / 255, data.test.y
    for method, record in records.items():
        out = tmp_path / f"{method}.pt2"
        result = CliRunner().invoke(cli, ["export", str(grid.out / record["run_id"]), "--task", "1,3",
                                          "--out", str(out)])
        assert result.exit_code == 0, result.output
        program = torch.export.load(str(out)).module()  # an exported module cannot switch to eval(): it is frozen
        accuracy = (program(images).argmax(1) == labels).float().mean().item()
        assert accuracy == pytest.approx(record["tasks"][0]["module_acc"])
        reordered = tmp_path / f"{method}-3-1.pt2"  # issue 22, defect 3: the same task, logits in the order given
        assert CliRunner().invoke(cli, ["export", str(grid.out / record["run_id"]), "--task", "3,1",
                                        "--out", str(reordered)]).exit_code == 0
        assert torch.equal(torch.export.load(str(reordered)).module()(images), program(images).flip(1))
    result = CliRunner().invoke(cli, ["export", str(grid.out / records["mwt"]["run_id"]), "--task", "0,1",
                                      "--out", str(tmp_path / "x.pt2")])
    assert result.exit_code != 0 and "has no module for task 0,1" in str(result.exception or result.output)
