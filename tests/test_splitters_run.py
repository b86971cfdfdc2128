"""GradSplitter and SeaM through the runner on a tiny grid: fp32 and bf16 autocast on the CPU, their records,
their exported modules, and SeaM's unstructured sparsity labelled in every report format."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest
import torch

from bench.data.builtin import load_synthetic
from bench.pipeline import layout, store
from bench.pipeline.runner import run_grid
from bench.report.export import export_module
from bench.report.output import as_text
from bench.report.tables import render, rich_table, summarize, task_rows
from bench.testing import make_tiny_grid
from methods.gradsplitter import KernelSplitter
from methods.seam import WeightReengineer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASK = (1, 3)
TINY_SEARCHES = ("gradsplitter.head_epochs=1", "gradsplitter.cycles=1", "gradsplitter.cycle_masks=1",
                 "gradsplitter.cycle_heads=1", "gradsplitter.lr_mask=0.2", "seam.epochs=3")
TEST_IMAGES = {"size": 128, "classes": 4, "test_size": 32}


def _grid(out: Path, *sets: str) -> list:
    data = "synthetic:" + ",".join(f"{k}={v}" for k, v in TEST_IMAGES.items())
    grid = make_tiny_grid(out, sets=[*TINY_SEARCHES, *sets], methods="gradsplitter,seam", tasks=(TASK,),
                          datasets=data)  # the standard model is trained too, as their start, without a record
    return run_grid(grid)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("splitters") / "runs"
    return out, {r["method"]: r for r in _grid(out)}


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_both_methods_run_from_the_standard_model(fp32):
    _, records = fp32
    assert all(r["error"] is None for r in records.values())
    assert records["gradsplitter"]["model_metrics"]["test_acc"] == records["seam"]["model_metrics"]["test_acc"]
    for record in records.values():  # both started from the standard model, nothing retrained
        assert record["model_metrics"]["test_acc"] == record["baseline"]["standard_test_acc"]
        (task,) = record["tasks"]
        assert all(_finite(task[k]) for k in ("module_acc", "module_acc_before_finetune", "weight_retention",
                                             "flops_ratio", "latency_ratio"))
    figures = records["gradsplitter"]["modularization"]["method_metrics"]
    assert figures["epochs"] == 3 and 1 <= figures["chosen_epoch"] <= 3 and figures["search_seconds"] > 0
    assert "sparsity" not in records["gradsplitter"]["tasks"][0]  # sliced modules, not sparse ones


def test_seam_records_its_kept_weights_and_dense_flops_beside_the_sparse_ones(fp32):
    out, records = fp32
    record = records["seam"]
    (task,) = record["tasks"]
    assert task["sparsity"] == "unstructured"
    assert task["flops"] <= task["flops_dense"] and task["flops_ratio"] <= task["flops_ratio_dense"]
    assert record["modularization"]["retention"] == 1.0  # no class modules: every unit of every class kept
    stored = store.load_tensors(*_task_files(out, record))
    masks = {k: v for k, v in stored.items() if k.endswith(".mask")}
    dropped = sum(int((~m).sum()) for m in masks.values())
    dense = sum(v.numel() for k, v in stored.items() if k.endswith(".original") or _plain_parameter(k))
    assert masks and task["params"] == dense - dropped  # the stored module's kept weights
    assert list((out / record["run_id"]).parent.glob("compose-*-search.pt"))  # the task's search checkpoint
    cost = record["cost"]  # the task's search counts in the method's cost, on top of the standard model it reuses
    assert cost["compose_seconds"] == pytest.approx(task["compose_seconds"]) and task["compose_seconds"] > 0
    spent = cost["train_seconds"] + cost["modularize_seconds"] + cost["compose_seconds"]
    assert cost["ratio"] == pytest.approx(spent / cost["standard_train_seconds"])
    assert cost["compose_seconds"] > cost["modularize_seconds"]  # the search, not the activity pass, is its cost


def _plain_parameter(key: str) -> bool:
    return key.endswith((".weight", ".bias")) and "parametrizations" not in key and "running" not in key


def _task_files(out: Path, record: dict) -> tuple[Path, str]:
    path = layout.task_file(out / record["run_id"], TASK)
    return path.with_suffix(".pt"), store.read_json(path)["sha256"]


@pytest.mark.parametrize("method", ["gradsplitter", "seam"])
def test_exported_modules_score_as_recorded(fp32, method, tmp_path):
    out, records = fp32
    record = records[method]
    program = torch.export.load(str(export_module(record, TASK, tmp_path / "m.pt2", out))).module()
    test = load_synthetic(**TEST_IMAGES).task(TASK).test
    logits = program(test.x.float() / 255)
    assert logits.shape == (len(test.y), len(TASK))
    assert (logits.argmax(1) == test.y).float().mean().item() == pytest.approx(record["tasks"][0]["module_acc"])


def test_every_report_format_marks_the_unstructured_row(fp32):
    _, records = fp32
    summary = summarize(task_rows(records.values()))
    text = {fmt: render(summary, fmt) for fmt in ("md", "csv", "latex", "html")}
    cells = {"md": [line.split("|") for line in text["md"].splitlines() if line.startswith("|")],
             "csv": list(csv.reader(io.StringIO(text["csv"]))),
             "latex": [line.split("&") for line in text["latex"].splitlines() if "&" in line],
             "html": [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in text["html"].split("<tr")],
             "terminal": _terminal_rows(as_text(rich_table(summary)))}
    for fmt, rows in cells.items():  # the table's rows, not its footnote
        marked = {cell.strip() for row in rows if "unstructured" in map(str.strip, row) for cell in row}
        assert marked & set(records) == {"seam"}, fmt
    (seam,) = [row for row in json.loads(render(summary, "json")) if row["method"] == "seam"]
    assert seam["sparsity"] == "unstructured" and seam["flops_ratio_dense_mean"] >= seam["flops_ratio_mean"]
    assert "sparse kernels" in render(summary, "md")  # the footnote says what the label means


def _terminal_rows(text: str) -> list[list[str]]:
    """The rich table's rows as cells, a cell folded onto continuation lines joined again."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) < 3:
            continue
        if cells[1] or not rows:
            rows.append(cells)
        else:  # a continuation line: its cells extend the row above
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    return rows


def test_the_searches_run_under_bf16_autocast(tmp_path, monkeypatch):
    seen: list[torch.dtype] = []
    for cls in (KernelSplitter, WeightReengineer):
        original = cls.forward

        def spy(self, x, _original=original):
            out = _original(self, x)
            if torch.is_grad_enabled():
                seen.append(out.dtype)
            return out

        monkeypatch.setattr(cls, "forward", spy)
    records = _grid(tmp_path / "runs", "precision=bf16", "finetune_epochs=0")  # fine-tuning: test_precision.py
    assert all(r["error"] is None and r["precision"] == "bf16" for r in records)
    assert seen and set(seen) == {torch.bfloat16}
    seam = next(r for r in records if r["method"] == "seam")
    assert _finite(seam["tasks"][0]["module_acc"]) and seam["tasks"][0]["sparsity"] == "unstructured"


@pytest.mark.slow  # two cells of a 57-conv network (the unit tests cover MobileNetV2's masks in the default run)
def test_both_run_on_a_tiny_mobilenetv2(tmp_path):
    grid = make_tiny_grid(tmp_path / "runs", sets=TINY_SEARCHES, methods="gradsplitter,seam", tasks=(TASK,),
                          models="mobilenetv2:width=0.125")
    records = {r["method"]: r for r in run_grid(grid)}
    assert all(r["error"] is None for r in records.values()), {m: r["error"] for m, r in records.items()}
    assert records["seam"]["tasks"][0]["flops"] <= records["seam"]["tasks"][0]["flops_dense"]
    assert records["gradsplitter"]["modularization"]["units_total"] > 0


def test_seam_runs_on_a_tiny_vit(tmp_path):  # weight masks on every linear layer: its authors ran CNNs only
    grid = make_tiny_grid(tmp_path / "runs", sets=["seam.epochs=5", "seam.lr_mask=0.3"], methods="seam", tasks=(TASK,),
                          models="vit_s:depth=2,width=0.125")
    record = next(r for r in run_grid(grid) if r["method"] == "seam")
    (task,) = record["tasks"]
    assert record["error"] is None and task["sparsity"] == "unstructured"
    assert 0 < task["weight_retention"] < 1 and task["flops"] < task["flops_dense"]
