"""How the arithmetic runs, end to end.

bfloat16: every built-in method on a CNN, a ViT and a DeiT, trained, modularized, reused with fine-tuning,
recorded and exported under ``--set precision=bf16`` (autocast on a CPU too); the same grid on CUDA.
Deterministic mode (``--deterministic``): set while the cells run, recorded, and on a CPU the same numbers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import bench.pipeline.workspace
from bench.data.builtin import load_synthetic
from bench.grid.config import GridConfig
from bench.pipeline import layout, store, training
from bench.pipeline.runner import run_grid
from bench.record import Record
from bench.report.export import export_module
from bench.testing import make_tiny_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = ("standard", "mwt", "nemo", "moda")
MODELS = {"simcnn": "simcnn:width=0.125", "vit_s": "vit_s:depth=2,width=0.125", "deit_s": "deit_s:depth=2,width=0.125"}
TASK = (0, 1)
TEST_IMAGES = {"size": 256, "classes": 4, "test_size": 64}  # bench.testing.TINY_DATASET


@dataclass
class Run:
    """A finished bf16 grid: its config, records, and the precision of every autocast the training loop opened."""

    grid: GridConfig
    records: list[Record]
    autocasts: list[str]


def run_bf16_grid(out: Path, device: str) -> Run:
    """The tiny grid of every built-in method on the three model families in bf16, with its autocasts spied on."""
    grid = make_tiny_grid(out, sets=["precision=bf16"], methods=",".join(METHODS), models=",".join(MODELS.values()),
                          tasks=(TASK,), device=device)
    autocasts: list[str] = []
    original = training.autocast

    def spy(device: torch.device, precision: str):
        autocasts.append(precision)
        return original(device, precision)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "autocast", spy)
        records = run_grid(grid)
    return Run(grid, records, autocasts)


def finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def check_records(run: Run) -> None:
    """One complete bf16 record per method and model; every training and fine-tuning step ran in bf16."""
    assert sorted((r["model"], r["method"]) for r in run.records) == sorted(
        (model, method) for model in MODELS for method in METHODS)  # the DeiT's teacher has no record
    assert run.autocasts and set(run.autocasts) == {"bf16"}
    for record in run.records:
        assert record["error"] is None, record["error"]
        assert record["precision"] == "bf16" and record["recipe"]["precision"] == "bf16"
        assert all(finite(row["loss"]) for row in record["train_history"])
        assert all(finite(v) for v in record["model_metrics"].values())
        assert all(finite(record["modularization"][k]) for k in ("retention", "cohesion", "coupling"))
        (task,) = record["tasks"]
        assert tuple(task["classes"]) == TASK
        assert all(finite(task[k]) for k in ("module_acc", "module_acc_before_finetune", "flops_ratio",
                                             "weight_retention", "latency_ratio"))
        history = store.read_json(layout.task_file(run.grid.out / record["run_id"], TASK))["info"]["finetune_history"]
        assert (len(history) > 0) == (record["method"] != "standard")  # a standard module is reused as it is
        assert all(finite(row["loss"]) for row in history)


def check_export(run: Run, model: str, method: str, tmp_path: Path) -> None:
    """The exported module of ``method`` on ``model`` scores its task's test images as its record says."""
    (record,) = [r for r in run.records if (r["model"], r["method"]) == (model, method)]
    out = export_module(record, TASK, tmp_path / "module.pt2", run.grid.out)
    program = torch.export.load(str(out)).module()
    test = load_synthetic(**TEST_IMAGES).task(TASK).test
    logits = program(test.x.float() / 255)
    assert logits.dtype == torch.float32 and logits.shape == (len(test.y), len(TASK))
    accuracy = (logits.argmax(1) == test.y).float().mean().item()
    assert accuracy == pytest.approx(record["tasks"][0]["module_acc"])


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> Run:
    return run_bf16_grid(tmp_path_factory.mktemp("bf16") / "runs", "cpu")


@pytest.mark.heavy
def test_every_method_and_model_family_runs_in_bf16_on_a_cpu(cpu_run):
    check_records(cpu_run)


@pytest.mark.heavy
@pytest.mark.parametrize(("model", "method"), [(model, method) for model in MODELS for method in METHODS])
def test_bf16_modules_export_and_score_as_recorded(cpu_run, model, method, tmp_path):
    check_export(cpu_run, model, method, tmp_path)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_bf16_grid_on_cuda(tmp_path):
    run = run_bf16_grid(tmp_path / "runs", "cuda")
    check_records(run)
    assert all(r["env"]["device"] == torch.cuda.get_device_name() for r in run.records)
    for model in MODELS:  # exported from the CUDA run's files, on the CPU
        for method in METHODS:
            check_export(run, model, method, tmp_path / model / method)


def kernel_mode() -> tuple:
    """The process-wide settings ``--deterministic`` is about: deterministic algorithms (and warn-only),
    cuDNN deterministic, cuDNN autotuning, CUBLAS_WORKSPACE_CONFIG, cuDNN attention."""
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"), torch.backends.cuda.cudnn_sdp_enabled())


@pytest.fixture
def restored_kernel_mode(monkeypatch):
    """Put back the kernel mode and CUBLAS_WORKSPACE_CONFIG (absent or not) that a run changes."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # undone last: the variable as it was before the test
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    saved = kernel_mode()
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
    torch.backends.cuda.enable_cudnn_sdp(saved[5])


def figures(record: Record) -> dict:
    """What a record measured, without timings (seconds, latency) and without the identity of its run."""
    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if not k.endswith("seconds") and "latency" not in k}
        return [untimed(v) for v in value] if isinstance(value, list) else value

    return untimed({k: record[k] for k in ("model_metrics", "modularization", "tasks", "train_history", "baseline")})


def run_watching_kernels(out: Path, deterministic: bool, monkeypatch) -> tuple[list[Record], set[tuple]]:
    """The tiny mwt grid (with its standard model), and the kernel modes seen whenever it trained."""
    seen: set[tuple] = set()

    def fit(*args, **kwargs):
        seen.add(kernel_mode())
        return training.fit(*args, **kwargs)

    monkeypatch.setattr(bench.pipeline.workspace, "fit", fit)
    sets = ["deterministic=true"] if deterministic else []
    return run_grid(make_tiny_grid(out, sets=sets, methods="mwt")), seen


def test_deterministic_mode_is_set_recorded_and_changes_no_cpu_number(tmp_path, monkeypatch, restored_kernel_mode):
    strict, strict_modes = run_watching_kernels(tmp_path / "strict", True, monkeypatch)
    free, free_modes = run_watching_kernels(tmp_path / "free", False, monkeypatch)
    assert strict_modes == {(True, True, True, False, ":4096:8", False)}  # train and fine-tune, every cell
    assert {(mode[0], mode[2], mode[3], mode[5]) for mode in free_modes} == {(False, False, False, True)}
    assert [r["deterministic"] for r in strict] == [True, True] and [r["deterministic"] for r in free] == [False, False]
    assert [r["method"] for r in strict] == [r["method"] for r in free] == ["standard", "mwt"]
    for a, b in zip(strict, free, strict=True):
        assert a["config_key"] != b["config_key"]  # two configurations of the report ...
        assert figures(a) == figures(b)  # ... with the same numbers
