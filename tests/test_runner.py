"""The runner end to end on the tiny grid: records, caching, resume, determinism, failures, sweeps."""

from __future__ import annotations

import io
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

import bench.pipeline.workspace
from bench.errors import UsageError
from bench.pipeline import store
from bench.pipeline.runner import run_grid
from bench.plugins.manager import get_plugins
from bench.record import RECORD_SCHEMA
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS, DummyMethod, MethodPlugin, make_tiny_grid, use_plugin

TASKS = ((0, 1), (2, 3))
STAGES = ("train", "modularize", "compose")
TASK_FIELDS = ("classes", "module_acc", "module_acc_before_finetune", "standard_acc", "retention", "retention_sum",
               "params", "weight_retention", "flops", "flops_ratio", "latency_ratio")


class Calls:
    """Every method stage and every ``fit`` the runner calls, as (method, stage, model) tuples."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.log: list[tuple[str, str, str]] = []
        original_fit = bench.pipeline.workspace.fit

        def fit(*args: Any, **kwargs: Any) -> Any:
            self.log.append(("*", "fit", "*"))
            return original_fit(*args, **kwargs)

        monkeypatch.setattr(bench.pipeline.workspace, "fit", fit)

    def watch(self) -> Calls:
        """Spy on the stages of every method registered now."""
        state = get_plugins()
        for name in state.methods:
            method = state.methods.get(name)
            for stage in STAGES:
                self._spy(method, stage)
        return self

    def _spy(self, method: Any, stage: str) -> None:
        original = getattr(method, stage)
        if getattr(original, "spied", False):
            return

        def spy(ctx: Any, *args: Any) -> Any:
            self.log.append((method.name, stage, ctx.spec.name))
            return original(ctx, *args)

        spy.spied = True
        self.monkeypatch.setattr(method, stage, spy)

    def count(self, method: str = "*", stage: str = "*", model: str = "*") -> int:
        """How many calls match (``*`` matches anything)."""
        return sum(all(want in ("*", got) for want, got in zip((method, stage, model), entry, strict=True))
                   for entry in self.log)


@pytest.fixture
def calls(monkeypatch) -> Calls:
    return Calls(monkeypatch).watch()


def without_timings(value: Any) -> Any:
    """``value`` without what legitimately differs between runs: start time, seconds, latency, the cost ratio
    (and the git commit, which a concurrent commit in the checkout may change while the suite runs)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if not k.endswith("seconds") and not k.startswith("latency_ratio")
                and k not in ("started", "git", "ratio")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def by_method(records: list[dict]) -> dict[str, dict]:
    return {r["method"]: r for r in records}


def filled(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def assert_complete(record: dict, tasks: tuple[tuple[int, ...], ...] = TASKS) -> None:
    """Every field of DESIGN §6 is there and filled."""
    assert record["error"] is None
    assert record["schema"] == RECORD_SCHEMA == 3
    for key in ("run_id", "method", "model", "model_args", "dataset", "seed", "preset", "hparams"):
        assert key in record and record[key] is not None, key
    for key in ("modbench", "torch", "device", "git", "started"):
        assert filled(record["env"].get(key)), f"env.{key}"
    for key in ("test_acc", "params", "flops", "train_seconds"):
        assert filled(record["model_metrics"].get(key)), f"model_metrics.{key}"
    for key in ("threshold", "unit", "units_total", "retention", "cohesion", "coupling", "seconds"):
        assert filled(record["modularization"].get(key)), f"modularization.{key}"
    cost = record["cost"]
    assert cost["device"] == cost["standard_device"] == record["env"]["device"]
    spent = cost["train_seconds"] + cost["modularize_seconds"] + cost["compose_seconds"]
    assert cost["ratio"] == pytest.approx(spent / cost["standard_train_seconds"])
    assert cost["modularize_seconds"] == record["modularization"]["seconds"]
    assert [tuple(t["classes"]) for t in record["tasks"]] == list(tasks)
    for task in record["tasks"]:
        for key in TASK_FIELDS:
            assert filled(task.get(key)), f"tasks.{key}"
        for key in ("module_acc", "module_acc_before_finetune", "standard_acc"):
            assert 0 <= task[key] <= 1
        assert 0 < task["retention"] <= 1 and task["retention"] <= task["retention_sum"] <= len(task["classes"])
    assert Path(record["run_id"]).parent.name == f"t{record['threshold']!r}"


def record_files(out: Path) -> list[Path]:
    return sorted(out.rglob("record.json"))


def copy_runs(source: Path, tmp_path: Path) -> Path:
    """A copy of a finished runs directory to change without touching the original."""
    target = tmp_path / "runs"
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_standard) -> tuple[Path, list[dict]]:
    """mwt and nemo on the tiny grid (standard is added by the runner), two tasks."""
    out = tiny_standard.copy_to(tmp_path_factory.mktemp("finished") / "runs")
    return out, run_grid(make_tiny_grid(out, methods="mwt,nemo", tasks=TASKS))


def test_records_have_every_field(finished):
    out, records = finished
    assert [r["method"] for r in records] == ["standard", "mwt", "nemo"]  # the baseline first, added for us
    assert len(record_files(out)) == 3
    for record in records:
        assert_complete(record)
        assert store.read_json(out / record["run_id"] / "record.json") == record
        assert record["model"] == "simcnn" and record["model_args"] == {"width": 0.125}
        assert record["dataset"] == "synthetic" and record["preset"] == "smoke" and record["seed"] == 0
        assert record["recipe"]["epochs"] == 1 and record["recipe"]["batch_size"] == 32
    standard, mwt, nemo = records
    assert standard["hparams"] == {} and mwt["hparams"]["beta"] == 1.5 and nemo["hparams"]["alpha"] == 1.3
    for task in standard["tasks"]:  # the standard module is the whole model, reused as it is
        assert task["module_acc"] == task["standard_acc"] == task["module_acc_before_finetune"]
        assert task["weight_retention"] == task["flops_ratio"] == task["retention"] == 1.0
    reference = standard["model_metrics"]["params"]
    for record in (mwt, nemo):
        assert record["modularization"]["unit"] == "kernel"
        assert record["modularization"]["units_total"] == 520  # 12 masked convs of the width-0.125 SimCNN
        assert record["model_metrics"]["params"] > reference  # the mask generators
        for task, standard_task in zip(record["tasks"], standard["tasks"], strict=True):
            assert task["standard_acc"] == standard_task["standard_acc"]
            assert task["params"] < reference
            assert task["weight_retention"] == pytest.approx(task["params"] / reference)
            assert task["flops_ratio"] < 1


def test_a_second_run_recomputes_nothing(finished, calls):
    out, first = finished
    again = run_grid(make_tiny_grid(out, methods="mwt,nemo", tasks=TASKS))
    assert calls.log == []
    assert without_timings(again) == without_timings(first)
    assert [r["env"]["started"] for r in again] != [None] * 3


def test_a_fresh_directory_gives_the_same_numbers(finished, tmp_path):
    _, first = finished
    again = run_grid(make_tiny_grid(tmp_path / "elsewhere", methods="mwt", tasks=TASKS))
    expected = by_method(first)
    assert [r["method"] for r in again] == ["standard", "mwt"]
    for record in again:
        assert without_timings(record) == without_timings(expected[record["method"]])


class Crashy(DummyMethod):
    """Trains, then is interrupted while modularizing, once."""

    name = "crashy"
    armed = True

    def modularize(self, ctx, trained):
        if Crashy.armed:
            Crashy.armed = False
            raise KeyboardInterrupt
        return super().modularize(ctx, trained)


def test_resume_after_a_crash(finished, tmp_path, monkeypatch):
    out = copy_runs(finished[0], tmp_path)
    grid = make_tiny_grid(out, methods="crashy,dummy", tasks=TASKS)
    monkeypatch.setattr(Crashy, "armed", True)
    with use_plugin(MethodPlugin(Crashy(), DummyMethod()), "test-crash"):
        calls = Calls(monkeypatch).watch()
        with pytest.raises(KeyboardInterrupt):
            run_grid(grid)
        assert calls.count("standard") == 0  # finished before: nothing recomputed
        assert calls.count("crashy", "train") == 1 and calls.count("dummy") == 0
        crashy_dir = next((out / grid.datasets[0].slug / grid.models[0].slug / "crashy").iterdir())
        assert (crashy_dir / "model.pt").is_file() and not list(crashy_dir.rglob("record.json"))

        calls.log.clear()
        records = run_grid(grid)
    assert calls.count("standard") == 0
    assert calls.count("crashy", "train") == 0  # the checkpoint survived the crash
    assert calls.count("crashy", "modularize") == 1 and calls.count("crashy", "compose") == 2
    assert calls.count("dummy", "train") == 1 and calls.count("dummy", "compose") == 2
    assert [r["method"] for r in records] == ["standard", "crashy", "dummy"]
    for record in records:
        assert_complete(record)


class Broken(DummyMethod):
    name = "broken"

    def train(self, ctx):
        raise RuntimeError("boom at epoch 0")


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(finished, tmp_path, monkeypatch, capsys):
    out = copy_runs(finished[0], tmp_path)
    with use_plugin(MethodPlugin(Broken()), "test-broken"):
        records = by_method(run_grid(make_tiny_grid(out, methods="broken,mwt", tasks=TASKS)))
    assert list(records) == ["standard", "broken", "mwt"]
    assert records["broken"]["error"] == "RuntimeError: boom at epoch 0"
    assert records["broken"]["tasks"] == [] and records["broken"]["modularization"] is None
    on_disk = store.read_json(out / records["broken"]["run_id"] / "record.json")
    assert on_disk["error"] == "RuntimeError: boom at epoch 0"
    assert_complete(records["standard"])
    assert_complete(records["mwt"])

    from bench.cli import main

    tiny = [arg for setting in TINY_SETTINGS for arg in ("--set", setting)]
    argv = ["bench", "run", "--methods", "broken", "--models", TINY_MODEL, "--datasets", TINY_DATASET,
            "--tasks", "0,1", "--tasks", "2,3", "--device", "cpu", "--quiet", "--out", str(out), *tiny]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    with use_plugin(MethodPlugin(Broken()), "test-broken"), pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "1 of 2 records failed" in captured.err and "boom at epoch 0" in captured.err
    assert "Traceback" not in captured.err
    assert "standard" in captured.out  # the comparison table of what did run


def test_a_bad_method_value_stops_the_run_before_training(tmp_path, monkeypatch):
    def fit(*args, **kwargs):
        raise AssertionError("trained before --set was checked")

    monkeypatch.setattr(bench.pipeline.workspace, "fit", fit)
    with pytest.raises(UsageError, match="bad value for extraction: 'bogus'"):
        run_grid(make_tiny_grid(tmp_path / "runs", methods="mwt", sets=["mwt.extraction=bogus"]))
    assert not list((tmp_path / "runs").rglob("*.json"))


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"\x00corrupt"
    path.write_bytes(bytes(data))


def standard_checkpoint(out: Path) -> Path:
    (path,) = out.glob("*/*/standard/*/model.pt")
    return path


def test_a_corrupt_checkpoint_is_detected_and_retrained(finished, tmp_path, calls):
    out = copy_runs(finished[0], tmp_path)
    corrupt(standard_checkpoint(out))
    log = io.StringIO()
    (record,) = run_grid(make_tiny_grid(out, tasks=TASKS), console=Console(file=log, width=400))
    assert "does not match its recorded checksum; computing it again" in log.getvalue()
    assert calls.count("standard", "train") == 1
    assert_complete(record)
    assert without_timings(record) == without_timings(finished[1][0])  # CPU training is deterministic


def test_a_retrained_model_is_reused_afresh(finished, tmp_path, calls, monkeypatch):
    out = copy_runs(finished[0], tmp_path)
    corrupt(standard_checkpoint(out))
    original_fit = bench.pipeline.workspace.fit

    def nondeterministic_fit(model, *args, **kwargs):  # as training on a GPU may be
        history = original_fit(model, *args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=0.01)
        return history

    monkeypatch.setattr(bench.pipeline.workspace, "fit", nondeterministic_fit)
    run_grid(make_tiny_grid(out, tasks=TASKS))
    assert calls.count("standard", "train") == 1
    assert calls.count("standard", "compose") == len(TASKS)


def test_a_threshold_sweep_shares_one_trained_model(finished, tmp_path, calls):
    out = copy_runs(finished[0], tmp_path)
    shutil.rmtree(standard_checkpoint(out).parent.parent.parent / "mwt")
    records = run_grid(make_tiny_grid(out, methods="mwt", thresholds=(0.5, 0.9), tasks=TASKS))
    assert [(r["method"], r["threshold"]) for r in records] == [("standard", 0.5), ("standard", 0.9),
                                                                 ("mwt", 0.5), ("mwt", 0.9)]
    assert calls.count(stage="train") == 1 and calls.count("mwt", "train") == 1
    assert calls.count("mwt", "modularize") == 2
    low, high = records[2:]
    assert Path(low["run_id"]).parents[1] == Path(high["run_id"]).parents[1]  # one trained model
    assert (low["modularization"]["threshold"], high["modularization"]["threshold"]) == (0.5, 0.9)
    assert low["modularization"]["retention"] >= high["modularization"]["retention"]
    assert without_timings(high) == without_timings(by_method(finished[1])["mwt"])
    for record in records:
        assert_complete(record)


def test_deit_trains_its_resnet18_teacher_once(tmp_path, calls):
    grid = make_tiny_grid(tmp_path / "runs", models="deit_s:depth=2,width=0.125", tasks=((0, 1),))
    records = run_grid(grid)
    assert calls.count("standard", "train", "resnet18") == 1
    assert calls.count("standard", "train", "deit_s") == 1
    assert calls.count(stage="train") == 2
    assert [(r["method"], r["model"]) for r in records] == [("standard", "deit_s")]  # the teacher has no record
    assert [p.relative_to(grid.out).parts[1] for p in record_files(grid.out)] == ["deit_s-depth2-width0.125"]
    assert list(grid.out.glob("*/resnet18-width0.125/standard/*/model.pt"))  # kept for reuse, at the student width
    assert_complete(records[0], ((0, 1),))
    assert records[0]["family"] == "vit" and records[0]["modularization"]["unit"] == "neuron"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_tiny_grid_on_cuda(tmp_path):
    records = run_grid(make_tiny_grid(tmp_path / "runs", methods="mwt,nemo", device="cuda", tasks=TASKS))
    assert [r["method"] for r in records] == ["standard", "mwt", "nemo"]
    for record in records:
        assert_complete(record)
        assert record["env"]["device"] == torch.cuda.get_device_name()
