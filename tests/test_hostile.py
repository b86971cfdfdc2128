"""Hostile input: every bad value, file and place a user can hand ``bench``, each answered by its exit code
(2: bad usage, 1: a failed run) and one line that says what was wrong, never a traceback; and the store
defects of issue 11, each reproduced on a tiny run and shown fixed.

The cases run in process through ``bench.cli.main``, as the console script runs it. Runs that must compute
something copy one finished tiny run and recompute only what the case needs.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import resource
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import authors_models as authors
import numpy as np
import pytest
import torch
from console import Result, invoker, run_main
from torch import nn

import bench.cli
import bench.pipeline.stages.train
from bench.grid.config import grid_from_options, read_config_file
from bench.grid.options import merge_options
from bench.models.cnn import simcnn
from bench.modular.masking import maskable_units
from bench.pipeline import store
from bench.record import RECORD_SCHEMA, read_record
from bench.report.load import load_records
from bench.report.rows import task_rows
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS, DummyMethod, MethodPlugin, use_plugin

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SETTINGS = [item for setting in TINY_SETTINGS for item in ("--set", setting)]
GRID = ["--models", TINY_MODEL, "--datasets", TINY_DATASET, "--tasks", "0,1", "--device", "cpu", "--quiet",
        *SETTINGS]
RUN = ["run", "--methods", "standard", *GRID]
CONFIG_RUN = ["run", "--methods", "standard", "--device", "cpu", "--quiet"]  # leaves tasks and settings to --config


@pytest.fixture
def cli(capsys, monkeypatch) -> Callable[..., Result]:
    """Run ``bench ...`` in process; returns its exit code and output."""
    return invoker(capsys, monkeypatch)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_standard) -> Path:
    """A finished tiny run of the standard method (task 0,1): the runs folder."""
    runs = tiny_standard.copy_to(tmp_path_factory.mktemp("hostile") / "runs", workers="auto")  # bench run's default
    assert run_main([*RUN, "--out", runs]) == 0
    return runs


@pytest.fixture
def runs(finished, tmp_path) -> Path:
    """A private copy of the finished run, to damage and re-run."""
    return Path(shutil.copytree(finished, tmp_path / "runs"))


def record_dir(runs: Path) -> Path:
    """The folder of the (only) record under ``runs``."""
    (path,) = runs.rglob("record.json")
    return path.parent


def train_dir(runs: Path) -> Path:
    """The train stage's folder of the (only) record under ``runs``."""
    return record_dir(runs).parent.parent


def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write in (a read-only folder; /sys/kernel for root, who ignores modes)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    system = Path("/sys/kernel")
    try:
        (system / "modbench-probe").touch()
    except OSError:
        return system
    pytest.skip("no read-only folder is available to this user")


# ----------------------------------------------------------------------------- bad input before any work


@dataclass
class Where:
    """Places a case may name: a scratch folder, a finished run and its record folder, a read-only folder."""

    tmp: Path
    runs: Path
    run: Path

    @functools.cached_property
    def read_only(self) -> Path:
        """A folder this process cannot write in (the case is skipped where there is none)."""
        return unwritable(self.tmp)


def config(where: Where, text: str | bytes) -> Path:
    """A config file holding ``text``."""
    path = where.tmp / "grid.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def a_file(where: Where, name: str = "a-file", text: str = "not a folder") -> Path:
    """A regular file."""
    path = where.tmp / name
    path.write_text(text)
    return path


IMPORT = ["import", "--source", "mwt", "--model", "vgg16:width=0.125", "--dataset", "synthetic"]


def pickled(where: Where) -> Path:
    """A file that torch.load would unpickle into an object of this module (a pickle that runs code, as far as
    weights-only loading is concerned)."""
    path = where.tmp / "objects.pth"
    torch.save({"model": Where(where.tmp, where.runs, where.run)}, path)
    return path


def nonfinite(where: Where, value: float, name: str | None = None) -> Path:
    """The MwT authors' VGG16 checkpoint (standard form) with every float tensor, or only tensor ``name``, set to
    ``value``."""
    state = authors.VGG16(10, 0.125, modular=False).state_dict()
    for key, tensor in state.items():
        if tensor.is_floating_point() and name in (None, key):
            tensor.fill_(value)
    path = where.tmp / "nan.pth"
    torch.save(state, path)
    return path


def plugin(where: Where, code: str) -> Path:
    """A plugins folder holding one plugin, ``broken.py``, of ``code``."""
    folder = where.tmp / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text(code)
    return folder


USAGE: dict[str, tuple[Callable[[Where], list], str]] = {  # case: (arguments, what the one line says)
    "width 0": (lambda w: [*RUN, "--models", "simcnn:width=0"], "width must be a number in (0, 16], got 0.0"),
    "width < 0": (lambda w: [*RUN, "--models", "resnet18:width=-1"], "width must be a number in (0, 16]"),
    "width nan": (lambda w: [*RUN, "--models", "vgg16:width=nan"], "got nan"),
    "width inf": (lambda w: [*RUN, "--models", "rescnn:width=inf"], "got inf"),
    "width huge": (lambda w: [*RUN, "--models", "vit_s:width=1e30"], "width must be a number in (0, 16]"),
    "vit depth 1": (lambda w: [*RUN, "--models", "vit_s:depth=1"], "depth must be an integer from 2 to 64"),
    "vit depth 0": (lambda w: [*RUN, "--models", "vit_s:depth=0"], "but the first), got 0"),
    "deit depth huge": (lambda w: [*RUN, "--models", "deit_s:depth=10000000000"], "depth must be an integer"),
    "depth not int": (lambda w: [*RUN, "--models", "vit_s:depth=2.5"], "depth=2.5 should be an int"),
    "bn not bool": (lambda w: [*RUN, "--models", "simcnn:bn=maybe"], "bn='maybe' should be a bool"),
    "unknown model arg": (lambda w: [*RUN, "--models", "vit_s:heads=3"], "takes no argument 'heads'"),
    "nemo alpha < 0": (lambda w: [*RUN, "--methods", "nemo", "--set", "nemo.alpha=-1"],
                       "method nemo: alpha must be at least 0, got -1.0"),
    "nemo tau 0": (lambda w: [*RUN, "--methods", "nemo", "--set", "nemo.tau=0"],
                   "method nemo: tau must be greater than 0, got 0.0"),
    "nemo tau in a sweep": (lambda w: [*RUN, "--methods", "nemo", "--set", "nemo.tau=0.2,-1"],
                            "tau must be greater than 0, got -1.0"),
    "mwt beta < 0": (lambda w: [*RUN, "--methods", "mwt", "--set", "mwt.beta=-1"], "mwt: beta must be at least 0"),
    "mwt alpha < 0": (lambda w: [*RUN, "--methods", "mwt", "--set", "mwt.alpha=-0.5"], "alpha must be at least 0"),
    "moda gamma < 0": (lambda w: [*RUN, "--methods", "moda", "--set", "moda.gamma=-0.3"],
                       "method moda: gamma must be at least 0, got -0.3"),
    "mask_lr 0": (lambda w: [*RUN, "--methods", "mwt", "--set", "mwt.mask_lr=0"], "mask_lr must be greater than 0"),
    "set out of range": (lambda w: [*RUN, "--set", "lr=1e400"],
                         "bad value for lr: 1e400 is out of range for a number"),
    "set out of range in a sweep": (lambda w: [*RUN, "--set", "finetune_lr=0.1,-1e999"],
                                    "bad value for finetune_lr: -1e999 is out of range"),
    "cnnsplitter population < 0": (lambda w: [*RUN, "--methods", "cnnsplitter", "--set", "cnnsplitter.population=-1"],
                                   "cnnsplitter: population must be at least 1, got -1"),
    "cnnsplitter elites < 0": (lambda w: [*RUN, "--methods", "cnnsplitter", "--set", "cnnsplitter.elites=-2"],
                               "cnnsplitter: elites must be at least 0, got -2"),
    "nan setting": (lambda w: [*RUN, "--methods", "nemo", "--set", "nemo.alpha=nan"], "'nan' is not a float"),
    "epochs 0": (lambda w: [*RUN, "--set", "epochs=0"], "bad value for epochs: 0"),
    "seed too big": (lambda w: [*RUN, "--seeds", "99999999999"], "seed 99999999999 is out of range"),
    "seed < 0": (lambda w: [*RUN, "--seeds", "-1"], "seed -1 is out of range"),
    "seed not int": (lambda w: [*RUN, "--seeds", "one"], "bad seeds 'one'"),
    "empty methods": (lambda w: [*RUN, "--methods", ""], "--methods is empty"),
    "empty seeds": (lambda w: [*RUN, "--seeds", ","], "--seeds is empty"),
    "empty thresholds": (lambda w: [*RUN, "--thresholds", ""], "--thresholds is empty"),
    "threshold 0": (lambda w: [*RUN, "--thresholds", "0"], "thresholds must be in (0, 1]"),
    "threshold > 1": (lambda w: [*RUN, "--thresholds", "0.5,1.5"], "thresholds must be in (0, 1]"),
    "one-class task": (lambda w: [*RUN, "--tasks", "0"], "task '0' has one class"),
    "class twice": (lambda w: [*RUN, "--tasks", "1,1"], "task '1,1' names a class twice"),
    "class < 0": (lambda w: [*RUN, "--tasks", "0,-1"], "class ids cannot be negative"),
    "class not int": (lambda w: [*RUN, "--tasks", "a,b"], "bad task 'a,b'"),
    "class out of range": (lambda w: [*RUN, "--tasks", "0,7"], "class id 7 is out of range"),
    "dataset size 0": (lambda w: [*RUN, "--datasets", "synthetic:size=0"], "option size of dataset synthetic"),
    "dataset one class": (lambda w: [*RUN, "--datasets", "synthetic:classes=1"], "must be at least 2, got 1"),
    "dataset arg unknown": (lambda w: [*RUN, "--datasets", "synthetic:colour=1"], "takes no option colour"),
    "dataset arg not int": (lambda w: [*RUN, "--datasets", "synthetic:size=big"], "must be an integer, got 'big'"),
    "method without a model it suits": (lambda w: ["run", "--methods", "cnnsplitter", "--models", "vit_s:depth=2"],
                                        "method 'cnnsplitter' supports only cnn models; none of --models is one"),
    "unknown preset": (lambda w: [*RUN, "--preset", "fast"], "unknown preset 'fast'"),
    "unknown logger": (lambda w: [*RUN, "--log", "wandb"], "unknown logger 'wandb'"),
    "slurm without slurm": (lambda w: [*RUN, "--executor", "slurm"], "--executor slurm"),
    "unknown option": (lambda w: [*RUN, "--epochs", "3"], "No such option '--epochs'"),
    "bad executor": (lambda w: [*RUN, "--executor", "k8s"], "'k8s' is not one of 'local', 'ray', 'slurm'"),
    "config set as text": (lambda w: [*CONFIG_RUN, "--config", config(w, 'set = "epochs=1"')],
                           "config option 'set' must be a table"),
    "config not utf-8": (lambda w: [*CONFIG_RUN, "--config", config(w, b'methods = "standard"\n# \xff\xfe\n')],
                         "is not UTF-8 text"),
    "config not toml": (lambda w: [*CONFIG_RUN, "--config", config(w, "methods = [")], "is not valid TOML"),
    "config a folder": (lambda w: [*CONFIG_RUN, "--config", w.tmp], "is a folder"),
    "config unknown key": (lambda w: [*CONFIG_RUN, "--config", config(w, "epochs = 3")], "unknown option 'epochs'"),
    "config bad tasks": (lambda w: [*CONFIG_RUN, "--config", config(w, "tasks = 5")], "config option 'tasks' must"),
    "config workers a bool": (lambda w: [*CONFIG_RUN, "--config", config(w, "workers = true")],
                              "config option 'workers' must be a string or an integer, got True"),
    "config one-class task": (lambda w: [*CONFIG_RUN, "--config", config(w, 'tasks = "3"')], "task '3' has one class"),
    "out a file": (lambda w: [*RUN, "--out", a_file(w)], "is a file; give a folder for the runs"),
    "out inside a file": (lambda w: [*RUN, "--out", a_file(w) / "runs"], "cannot write there (Not a directory)"),
    "out read-only": (lambda w: [*RUN, "--out", w.read_only / "runs"], "cannot write there"),
    "show a JSON list": (lambda w: ["show", a_file(w, "list.json", "[1, 2]")], "not a record (a JSON list"),
    "show a JSON string": (lambda w: ["show", a_file(w, "text.json", '"run"')], "not a record (a JSON string"),
    "show a schema-1 stub": (lambda w: ["show", a_file(w, "old.json", '{"schema": 1}')], "invalid record: missing"),
    "show a truncated record": (lambda w: ["show", a_file(w, "half.json", '{"schema": 2, "run_')], "not JSON"),
    "show nothing": (lambda w: ["show", w.tmp / "nothing"], "no record at"),
    "report --out read-only": (lambda w: ["report", "--runs", w.runs, "--out", w.read_only / "r.md"],
                               "cannot write there"),
    "report --out a folder": (lambda w: ["report", "--runs", w.runs, "--out", w.tmp], "is a folder"),
    "report --plots a file": (lambda w: ["report", "--runs", w.runs, "--plots", a_file(w)], "is a file"),
    "report --plots read-only": (lambda w: ["report", "--runs", w.runs, "--plots", w.read_only / "plots"],
                                 "cannot write there"),
    "report no runs": (lambda w: ["report", "--runs", w.tmp / "nothing"], "no records under"),
    "report bad compare": (lambda w: ["report", "--runs", w.runs, "--compare", "mwt"], "takes two methods"),
    "report bad format": (lambda w: ["report", "--runs", w.runs, "--format", "xls"], "'xls' is not one of"),
    "export --out a folder": (lambda w: ["export", w.run, "--task", "0,1", "--out", w.tmp], "is a folder"),
    "export --out read-only": (lambda w: ["export", w.run, "--task", "0,1", "--out", w.read_only / "m.pt2"],
                               "cannot write there"),
    "export a task not run": (lambda w: ["export", w.run, "--task", "2,3", "--out", w.tmp / "m.pt2"],
                              "has no module for task 2,3"),
    "export a bad task": (lambda w: ["export", w.run, "--task", "x", "--out", w.tmp / "m.pt2"], "bad task 'x'"),
    "export without --task": (lambda w: ["export", w.run, "--out", w.tmp / "m.pt2"], "Missing option '--task'"),
    "unknown command": (lambda w: ["frobnicate"], "No such command 'frobnicate'"),
    "npz not a numpy file": (lambda w: [*RUN, "--datasets", f"npz:path={a_file(w)}"],
                             "(not a numpy .npz archive of plain arrays, as numpy.savez writes; pickled data is never "
                             "loaded)"),
    "npz missing": (lambda w: [*RUN, "--datasets", f"npz:path={w.tmp / 'x.npz'}"], "not found"),
    "image folder a file": (lambda w: [*RUN, "--datasets", f"folder:path={a_file(w)}"], "is not a directory"),
    "plugins dir a file": (lambda w: [*RUN, "--plugins-dir", a_file(w)], "plugins directory not found"),
    "plugin that raises": (lambda w: [*RUN, "--plugins-dir", plugin(w, "raise RuntimeError('no')")],
                           "plugin 'broken' failed to load: RuntimeError: no"),
    "unknown device": (lambda w: [*RUN, "--device", "tpu"], "bad --device 'tpu'"),
    "meta device": (lambda w: [*RUN, "--device", "meta"], "bad --device 'meta' (use auto, cpu, cuda, cuda:N or mps)"),
    "xla device": (lambda w: [*RUN, "--device", "xla"], "bad --device 'xla'"),
    "import a missing file": (lambda w: [*IMPORT, w.tmp / "none.pth"], "not found"),
    "import a damaged file": (lambda w: [*IMPORT, a_file(w, "bad.pth")], "which modbench never loads"),
    "import a pickle of objects": (lambda w: [*IMPORT, pickled(w)], "which modbench never loads)"),
    "import NaN weights": (lambda w: [*IMPORT, nonfinite(w, float("nan"))],
                           "holds NaN or infinite values in features.0.weight, features.0.bias, features.1.weight, "
                           "features.1.bias and 80 more; only finite weights are imported"),
    "import one infinite tensor": (lambda w: [*IMPORT, nonfinite(w, float("inf"), "classifier.6.bias")],
                                   "holds NaN or infinite values in classifier.6.bias; only finite"),
}
FAILED = {  # exit code 1: a file that is not a usable record
    "show a JSON list", "show a JSON string", "show a schema-1 stub", "show a truncated record",
}


@pytest.mark.parametrize("case", USAGE)
def test_bad_input_is_one_line_and_computes_nothing(case, cli, finished, tmp_path):
    arguments, expected = USAGE[case]
    if case == "slurm without slurm" and shutil.which("sbatch"):
        pytest.skip("Slurm is here: this case would submit jobs")
    where = Where(tmp_path, finished, record_dir(finished))
    args = arguments(where)
    if args[0] in ("run", "import") and "--out" not in args:
        args += ["--out", tmp_path / "runs"]
    line = (result := cli(*args)).line()
    assert result.code == (1 if case in FAILED else 2), line
    assert line.startswith("error: ") and expected in line
    assert "allow_pickle" not in line and "weights_only" not in line  # never advise loading a file unsafely
    assert not list((tmp_path / "runs").rglob("*.json"))


def test_a_config_task_is_one_task(tmp_path):
    """Defect 6: tasks = "0,1" and tasks = [0, 1] are one two-class task, not two one-class tasks."""
    for text, expected in (('tasks = "0,1"', ((0, 1),)), ("tasks = [0, 1]", ((0, 1),)),
                           ('tasks = ["0,1", "2,3"]', ((0, 1), (2, 3))), ("tasks = [[0, 1], [2, 3, 4]]",
                                                                          ((0, 1), (2, 3, 4)))):
        path = tmp_path / "grid.toml"
        path.write_text(text)
        assert grid_from_options(merge_options({}, read_config_file(path))).tasks == expected


def test_a_config_number_of_workers_is_a_number(cli, runs, tmp_path):
    """Issue 22, defect 6: ``workers = 1`` in a config file is --workers 1 (the finished run is found again)."""
    settings = "\n".join(f"{key} = {value}" for key, value in (s.split("=") for s in TINY_SETTINGS))
    path = tmp_path / "grid.toml"
    path.write_text(f'workers = 1\nmodels = "{TINY_MODEL}"\ndatasets = "{TINY_DATASET}"\ntasks = [0, 1]\n'
                    f"[set]\n{settings}\n")
    assert merge_options({}, read_config_file(path))["workers"] == "1"
    module = record_dir(runs) / "0-1.pt"
    untouched = module.stat().st_ino
    assert cli(*CONFIG_RUN, "--config", path, "--out", runs).code == 0
    assert module.stat().st_ino == untouched


def test_a_one_class_task_only_when_asked_for(tmp_path):
    given = {"tasks": ("0",), "one_class_tasks": True}
    assert grid_from_options(merge_options(given, {})).tasks == ((0,),)


# ----------------------------------------------------------------------------- read-only commands never compute


def test_export_of_a_damaged_model_names_it_and_never_trains(cli, runs, monkeypatch):
    """Defect 2: export on a damaged model.pt says so, with the command that rebuilds it; no training."""
    model = train_dir(runs) / "model.pt"
    model.write_bytes(b"damaged")
    monkeypatch.setattr(bench.pipeline.stages.train.TrainStage, "_train", lambda *a: pytest.fail("export trained"))
    result = cli("export", record_dir(runs), "--task", "0,1", "--out", runs.parent / "m.pt2")
    line = result.line()
    assert result.code == 1
    assert f"{model} does not match its recorded checksum; `bench run` recomputes it" in line
    assert model.read_bytes() == b"damaged" and not (runs.parent / "m.pt2").exists()
    assert cli("show", record_dir(runs)).code == 0


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_reused_module_is_reported_then_rebuilt(damage, cli, runs):
    """Defect 1: show and export report a missing or damaged module file; the next bench run rebuilds it."""
    module = record_dir(runs) / "0-1.pt"
    if damage == "delete":
        module.unlink()
    else:
        module.write_bytes(module.read_bytes()[:100])
    result = cli("export", record_dir(runs), "--task", "0,1", "--out", runs.parent / "m.pt2")
    assert result.code == 1 and str(module) in result.line() and "`bench run` recomputes it" in result.line()
    shown = cli("show", record_dir(runs))
    assert shown.code == 0 and shown.line().startswith(f"warning: {module}") and "bench run` rebuilds" in shown.err
    assert cli(*RUN, "--out", runs).code == 0
    assert cli("show", record_dir(runs)).err == ""
    entry = store.read_json(record_dir(runs) / "0-1.json")
    store.load_tensors(module, entry["sha256"])  # verifies, or raises
    assert cli("export", record_dir(runs), "--task", "0,1", "--out", runs.parent / "m.pt2").code == 0
    assert (runs.parent / "m.pt2").is_file()


def test_show_and_report_name_a_damaged_record_without_promising_a_recompute(cli, runs):
    """Defect 11: a damaged record is named; nothing says it 'will be recomputed' (show and report compute nothing)."""
    record = record_dir(runs) / "record.json"
    record.write_text(record.read_text()[:200])
    shown = cli("show", record)
    assert shown.code == 1 and str(record) in shown.line() and "recomputed" not in shown.line()
    reported = cli("report", "--runs", runs)
    warning, error = reported.err.strip().splitlines()
    assert reported.code == 2 and "Traceback" not in reported.err and "recomputed" not in reported.err
    assert warning.startswith(f"warning: skipped {record}") and error.startswith("error: no records under")


@pytest.mark.parametrize("content", ["[1, 2]", '"a string"', '{"schema": 1}', "{"])
def test_one_bad_record_never_breaks_a_report(content, cli, runs):
    """A record that is a list, a string, a schema-1 stub or half a file is skipped with one warning line."""
    bad = runs / "elsewhere" / "record.json"
    bad.parent.mkdir()
    bad.write_text(content)
    result = cli("report", "--runs", runs, "--format", "csv")
    (warning,) = result.err.strip().splitlines()
    assert result.code == 0 and warning.startswith(f"warning: skipped {bad}")
    assert "standard" in result.out


def test_figures_that_are_not_finite_are_named_and_shown_missing(cli, runs):
    """Issue 22, defect 8: NaN and infinite figures are one warning naming the record, and shown as missing."""
    path = record_dir(runs) / "record.json"
    record = json.loads(path.read_text())
    record["tasks"][0]["latency_ratio"] = float("inf")
    record["modularization"]["cohesion"] = float("nan")
    path.write_text(json.dumps(record))  # Python's json writes Infinity and NaN
    named = f"warning: {path}: figures that are not finite numbers, shown as missing: modularization.cohesion=nan, "
    for fmt in ("md", "csv", "json", "html", "latex"):
        result = cli("report", "--runs", runs, "--format", fmt)
        assert result.code == 0 and result.line().startswith(named) and "tasks[0,1].latency_ratio=inf" in result.line()
        shown = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", result.out).lower()  # the html page's plots
        assert "inf" not in shown.replace("info", "") and "nan" not in shown, fmt
    (row,) = json.loads(cli("report", "--runs", runs, "--format", "json").out)
    assert row.get("latency_ratio_mean") is None and row.get("cohesion_mean") is None  # missing (no finite value)
    assert row["module_acc_mean"] == record["tasks"][0]["module_acc"]  # the finite figures stay
    shown = cli("show", record_dir(runs))
    assert shown.code == 0 and shown.line().startswith(named) and "inf" not in shown.out


# ----------------------------------------------------------------------------- records: nothing lost, nothing merged


def test_a_failed_rerun_keeps_the_valid_record(cli, runs):
    """Defect 3 (``ulimit -f``): a re-run that cannot write a module fails, and the record keeps its figures."""
    before = read_record(record_dir(runs) / "record.json")
    (record_dir(runs) / "0-1.pt").unlink()  # the re-run must write it again, which the limit forbids
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        result = cli(*RUN, "--out", runs)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert result.code == 1 and "Traceback" not in result.err
    assert "1 of 1 records failed" in result.err.strip().splitlines()[-1]
    after = read_record(record_dir(runs) / "record.json")
    assert after["error"] is None and "File too large" in after["last_error"]["message"]
    assert after["tasks"] == before["tasks"] and after["model_metrics"] == before["model_metrics"]
    shown = cli("show", record_dir(runs))
    assert shown.code == 0 and "last error" in shown.out and "File too large" in shown.out
    reported = cli("report", "--runs", runs, "--format", "json")
    (row,) = json.loads(reported.out)
    assert row["module_acc_mean"] == before["tasks"][0]["module_acc"] and "File too large" in row["last_error"]


def test_a_stored_pickle_that_runs_code_is_recomputed_without_advice_to_load_it(cli, runs, tmp_path):
    """Issue 22, defect 9: a model.pt replaced by a pickle of an object (its checksum updated) is named as not a safe
    tensor file and retrained; torch's advice to load it with weights_only=False is never relayed."""
    model, entry = train_dir(runs) / "model.pt", train_dir(runs) / "model.json"
    shutil.copy(pickled(Where(tmp_path, runs, record_dir(runs))), model)
    stored = json.loads(entry.read_text())
    stored["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    entry.write_text(json.dumps(stored))
    result = cli(*RUN, "--out", runs)
    said = " ".join(result.err.split())  # the log line, unwrapped
    assert result.code == 0 and "weights_only" not in said
    assert "model.pt is not a safe tensor file (it holds more than tensors, or is damaged); computing it again" in said
    store.load_tensors(model, store.read_json(entry)["sha256"])  # retrained: loads, or raises


def test_an_emptied_train_entry_is_recomputed_and_the_record_stays_valid(cli, runs):
    """Defect 3 (the train stage's JSON set to []): the re-run retrains and writes a valid record."""
    (train_dir(runs) / "model.json").write_text("[]")
    assert cli(*RUN, "--out", runs).code == 0
    record = read_record(record_dir(runs) / "record.json")
    assert record["error"] is None and record["last_error"] is None and record["schema"] == RECORD_SCHEMA


def test_other_recipes_and_settings_are_other_rows(cli, runs):
    """Defect 4: epochs=2 (another model) and finetune_lr (another reuse folder) never average into one row."""
    assert cli(*RUN, "--set", "epochs=2", "--out", runs).code == 0
    assert cli(*RUN, "--set", "finetune_lr=0.01", "--out", runs).code == 0
    records = [read_record(path) for path in runs.rglob("record.json")]
    assert len({record["config_key"] for record in records}) == 3
    rows = json.loads(cli("report", "--runs", runs, "--format", "json").out)
    assert len(rows) == 3 and all(row["seeds"] == 1 and row["n"] == 1 for row in rows)
    assert len({row["config_key"] for row in rows}) == 3


def test_tasks_accumulate(cli, runs):
    """Defect 5: a re-run with other --tasks adds them; the earlier task stays in the record, report and export."""
    assert cli(*RUN, "--tasks", "2,3", "--out", runs).code == 0
    record = read_record(record_dir(runs) / "record.json")
    assert sorted(task["classes"] for task in record["tasks"]) == [[0, 1], [2, 3]]
    assert sorted(task_rows(load_records(runs).records)["task"]) == ["0,1", "2,3"]  # what reports summarise
    (row,) = json.loads(cli("report", "--runs", runs, "--format", "json").out)
    assert row["module_acc_mean"] == pytest.approx(sum(task["module_acc"] for task in record["tasks"]) / 2)
    assert cli("export", record_dir(runs), "--task", "0,1", "--out", runs.parent / "m.pt2").code == 0


def test_a_task_is_a_set_of_classes(cli, runs):
    """Issue 22, defect 3: --tasks 0,1 --tasks 1,0 is one task, computed once (the finished one) and counted once."""
    module = record_dir(runs) / "0-1.pt"
    untouched = module.stat().st_ino
    assert cli(*RUN, "--tasks", "1,0", "--tasks", "0,1", "--out", runs).code == 0
    record = read_record(record_dir(runs) / "record.json")
    assert [task["classes"] for task in record["tasks"]] == [[0, 1]]
    assert module.stat().st_ino == untouched and not list(runs.rglob("1-0.*"))
    (row,) = json.loads(cli("report", "--runs", runs, "--format", "json").out)
    assert row["n"] == 1


def save_npz(path: Path, classes: int, seed: int) -> Path:
    """An npz data set of ``classes`` classes (8 training and 4 test images each) drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (8 * classes, 32, 32, 3), np.uint8),
             y_train=np.arange(8 * classes) % classes, x_test=rng.integers(0, 256, (4 * classes, 32, 32, 3), np.uint8),
             y_test=np.arange(4 * classes) % classes)
    return path


def module_files(runs: Path) -> dict[str, int]:
    """The inode of every stage file under ``runs`` (a file written again gets another)."""
    return {str(path.relative_to(runs)): path.stat().st_ino for path in runs.rglob("*.pt")}


def test_results_follow_the_data_and_never_mix_two_models(cli, tmp_path):
    """Issue 22, defects 1 and 2: the same npz path with other images retrains; with more classes and other tasks,
    the record holds only tasks of the new model (the earlier task is dropped, said in a warning) and the warning
    says that the data changed (not that model.json 'cannot be used')."""
    data, runs = save_npz(tmp_path / "mut.npz", 3, seed=0), tmp_path / "runs"
    grid = ["run", "--methods", "standard", "--models", TINY_MODEL, "--datasets", f"npz:path={data}", "--device", "cpu",
            "--quiet", "--workers", "1", *SETTINGS, "--out", runs]
    run = [*grid, "--tasks", "0,1"]
    assert cli(*run).code == 0
    first = module_files(runs)
    os.utime(data, ns=(1, 1))  # touched: the same content
    assert cli(*run).code == 0 and module_files(runs) == first
    save_npz(data, 3, seed=1)  # same shape, other images
    changed = cli(*run)
    assert changed.code == 0 and "the data of npz:path=" in changed.err and "cannot be used" not in changed.err
    second = module_files(runs)
    assert second.keys() == first.keys() and all(second[name] != first[name] for name in first), (first, second)
    save_npz(data, 5, seed=2)
    result = cli(*grid, "--tasks", "3,4")
    said = " ".join(result.err.split())
    assert result.code == 0 and "cannot be used" not in said, said
    assert "task 0,1 was computed from other inputs (the data's content, the trained model, the module masks, " \
           "the standard model changed); it is dropped from the record (--tasks 0,1 computes it again)" in said
    (record,) = [read_record(path) for path in runs.rglob("record.json")]
    assert [task["classes"] for task in record["tasks"]] == [[3, 4]]


def test_near_thresholds_get_folders_of_their_own(cli, runs):
    """Defect 7: 0.9 and 0.9000001 are two folders and two records."""
    trained = train_dir(runs)
    assert cli(*RUN, "--thresholds", "0.9,0.9000001", "--out", runs).code == 0
    folders = sorted(path.name for path in trained.glob("t*"))
    assert folders == ["t0.9", "t0.9000001"]
    thresholds = sorted(read_record(path)["threshold"] for path in runs.rglob("record.json"))
    assert thresholds == [0.9, 0.9000001]


class Flaky(DummyMethod):
    """The dummy method, failing in training while ``broken``."""

    name = "flaky"
    broken = True

    def train(self, ctx):
        """Fails while broken."""
        if self.broken:
            raise RuntimeError("flaky failed on purpose")
        return super().train(ctx)


def test_retry_failed_runs_only_the_failed_cells(cli, runs):
    """``--retry-failed`` re-runs the cell whose record holds an error, and leaves the finished one alone."""
    method, standard = Flaky(), record_dir(runs) / "record.json"
    with use_plugin(MethodPlugin(method), "test-flaky"):
        failed = cli(*RUN, "--methods", "standard,flaky", "--out", runs)
        assert failed.code == 1 and "1 of 2 records failed" in failed.err
        untouched = standard.stat().st_ino
        method.broken = False
        assert cli(*RUN, "--methods", "standard,flaky", "--retry-failed", "--out", runs).code == 0
    assert standard.stat().st_ino == untouched  # the standard cell did not run again
    records = [read_record(path) for path in runs.rglob("record.json")]
    assert sorted(record["method"] for record in records) == ["flaky", "standard"]
    assert all(record["error"] is None for record in records)


# ----------------------------------------------------------------------------- words that say what happened


def test_a_diverging_temperature_is_named(cli, runs):
    """Defect 11: NeMo diverging with a tiny tau is told to change nemo.tau, not just lr."""
    result = cli(*RUN, "--methods", "nemo", "--set", "nemo.tau=1e-6", "--out", runs)
    assert result.code == 1
    (record,) = [read_record(path) for path in runs.rglob("record.json") if "nemo" in path.parts]
    assert "training diverged" in record["error"] and "nemo.tau=1e-06" in record["error"]


class NaNModule(nn.Module):
    """A module whose features are NaN: fine-tuning it diverges."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


class Diverging(DummyMethod):
    """The dummy method, whose reused modules diverge in fine-tuning."""

    name = "diverging"

    def compose(self, ctx, trained, modules, classes):
        """The dummy's module, made NaN."""
        return NaNModule(super().compose(ctx, trained, modules, classes))


def test_a_diverging_finetune_keeps_the_cell_and_the_composed_module(cli, runs):
    """Issue 22, defect 4: a diverged fine-tuning epoch is one model selection rejects (its history row says
    diverged); the cell keeps its figures and the composed module, and the warning advises --set finetune_lr."""
    with use_plugin(MethodPlugin(Diverging()), "test-diverging"):
        result = cli(*RUN, "--methods", "diverging", "--out", runs)
    said = " ".join(result.err.split())
    assert result.code == 0 and "fine-tuning task 0,1 diverged (the loss is nan at epoch 1 (try a smaller " \
        "finetune_lr with --set finetune_lr=...)); the module as composed is kept" in said and "--set lr=" not in said
    (path,) = [path for path in runs.rglob("record.json") if "diverging" in path.parts]
    record = read_record(path)
    assert record["error"] is None and record["modularization"]["cohesion"] is not None
    (task,) = record["tasks"]
    assert task["finetune_kept"] is False and task["module_acc"] == task["module_acc_before_finetune"]
    history = store.read_json(path.parent / "0-1.json")["info"]["finetune_history"]
    assert history == [{"epoch": 1, "diverged": "the loss is nan at epoch 1 (try a smaller finetune_lr with "
                                                 "--set finetune_lr=...)"}]


class WrongMasks(DummyMethod):
    """The dummy method, whose modules leave out the last unit of the second maskable layer."""

    name = "wrongmasks"

    def modularize(self, ctx, trained):
        """The dummy's modules, one unit short in one layer."""
        modules = super().modularize(ctx, trained)
        modules.sizes[1] -= 1
        modules.masks = modules.masks[:, 1:]
        return modules


def test_a_plugin_module_set_that_does_not_fit_the_model_is_named(cli, runs):
    """Issue 22, defect 10: masks of the wrong shape fail the cell with the plugin and the layer named (not a raw
    torch size mismatch)."""
    with use_plugin(MethodPlugin(WrongMasks()), "test-wrongmasks"):
        assert cli(*RUN, "--methods", "wrongmasks", "--out", runs).code == 1
    (record,) = [read_record(path) for path in runs.rglob("record.json") if "wrongmasks" in path.parts]
    name, unit = maskable_units(simcnn(4, width=0.125))[1]
    assert record["error"] == (f"method wrongmasks (plugin test-wrongmasks): its modules do not fit {TINY_MODEL}: "
                               f"layer '{name}' has {unit.num_units} units in the model, the masks give it "
                               f"{unit.num_units - 1}")
    assert record["model_metrics"]["test_acc"] is not None  # what was measured before stays


def test_ctrl_c_says_finished_stages_are_kept(cli, monkeypatch, tmp_path):
    """Defect 11: an interrupt, raised where click turns it into Abort, says what is kept (exit code 130)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.pipeline.runner.run_grid", interrupted)
    result = cli(*RUN, "--out", tmp_path / "runs")
    assert result.code == 130
    assert result.line() == "interrupted: finished stages are kept; run the same command again to resume"


# ----------------------------------------------------------------------------- what the package loads


PACKAGES = ("bench", "methods")


@functools.cache
def trees() -> list[tuple[Path, ast.Module]]:
    """Every Python file of the packages, parsed."""
    root = Path(bench.cli.__file__).resolve().parents[1]
    paths = sorted(path for package in PACKAGES for path in (root / package).rglob("*.py"))
    return [(path, ast.parse(path.read_text(), str(path))) for path in paths]


def calls(module: str, function: str) -> list[tuple[Path, ast.Call]]:
    """Every call written ``module.function(...)`` in the packages."""
    return [(path, node) for path, tree in trees() for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == function
            and isinstance(node.func.value, ast.Name) and node.func.value.id == module]


def keyword(call: ast.Call, name: str) -> object:
    """The constant value of a call's keyword argument (None when absent or not a constant)."""
    values = [k.value for k in call.keywords if k.arg == name]
    return values[0].value if values and isinstance(values[0], ast.Constant) else None


def test_every_torch_load_is_weights_only():
    loads = calls("torch", "load")
    assert loads, "no torch.load found at all: the search looks in the wrong place"
    assert all(keyword(call, "weights_only") is True for _, call in loads), [(p, c.lineno) for p, c in loads]


UNPICKLERS = ("pickle", "_pickle", "cPickle", "dill", "joblib")


def imports_an_unpickler(node: ast.AST) -> bool:
    """Whether ``node`` is ``from pickle import ...`` or imports another library that unpickles freely."""
    if isinstance(node, ast.ImportFrom):
        return node.module in UNPICKLERS
    return isinstance(node, ast.Import) and any(a.name in UNPICKLERS[1:] for a in node.names)


def test_nothing_unpickles_with_the_unrestricted_unpickler():
    unrestricted = [*calls("pickle", "load"), *calls("pickle", "loads"), *calls("pickle", "Unpickler"),
                    *calls("pd", "read_pickle"), *calls("pandas", "read_pickle")]
    assert not unrestricted, [(path, call.lineno) for path, call in unrestricted]
    imported = [(path, node.lineno) for path, tree in trees() for node in ast.walk(tree) if imports_an_unpickler(node)]
    assert not imported, imported
    arrays = [*calls("np", "load"), *calls("numpy", "load")]
    assert all(keyword(call, "allow_pickle") in (None, False) for _, call in arrays)
    unpicklers = [path.name for path, tree in trees() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                  and any(ast.unparse(base) == "pickle.Unpickler" for base in node.bases)]
    assert unpicklers == ["pickles.py"]  # the restricted one, which every pickle reader uses
