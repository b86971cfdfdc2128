"""``bench export``: a reused module as a self-contained ``torch.export`` program, or that program as ONNX.

The run is found from its record (its identity, recipe and hyperparameters as recorded), and the
module is rebuilt from the run's stages read-only (trained model, module masks, fine-tuned
weights, each checksum-verified): export never trains. A missing or damaged stage is reported
with the command that rebuilds it. The module is wrapped with the data set's normalisation and
saved with ``torch.export.save``: it takes float images in [0, 1], shape (batch, 3, 32, 32), and
returns logits over the task's classes, in the order of ``--task``.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import torch
from torch import nn

from bench.errors import StageMissing, UsageError
from bench.grid.config import GridConfig, canonical_task
from bench.grid.presets import recipe_for
from bench.grid.resolve import Resolved
from bench.grid.settings import Overrides
from bench.pipeline.cell import CellRunner
from bench.pipeline.progress import Bars
from bench.pipeline.store import atomic_write
from bench.pipeline.workspace import Workspace
from bench.plugins.manager import get_plugins
from bench.record import Record
from bench.refs import Ref
from bench.report.onnx import onnx_bytes, require_onnx


class Normalized(nn.Module):
    """``module((x - mean) / std)``: images in [0, 1] in, the module's logits out."""

    def __init__(self, module: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module((x - self.mean) / self.std)


class _Columns(nn.Module):
    """Some columns of a module's logits, in a given order: the task's of a module reused without a head (the
    standard model), or a head's (sorted classes) in the order of ``--task``."""

    def __init__(self, module: nn.Module, classes: tuple[int, ...]) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("columns", torch.tensor(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).index_select(1, self.columns)


def resolved_from(record: Record, runner: CellRunner) -> Resolved:
    """The cell of ``record`` as it ran: its preset and ``--set`` values (a record older than them: its recipe
    and hyperparameters as differences from the preset), with the precision it really ran in (so that a
    CUDA run's files are found from a CPU)."""
    method = runner.ws.plugins.methods.get(record["method"])
    model = Ref(record["model"], tuple(sorted(record["model_args"].items())))
    dataset = Ref(record["dataset"], tuple(sorted(record["dataset_args"].items())))
    recipe, hparams = _settings(record, runner, model, dataset) if "settings" not in record else (
        dict(record["settings"]["recipe"]), dict(record["settings"]["hparams"]))
    recipe["precision"] = record["precision"]
    overrides = Overrides(tuple(sorted(recipe.items())), ((method.name, tuple(sorted(hparams.items()))),))
    return runner.ws.resolver.cell(method.name, model, dataset, record["seed"], overrides)


def _settings(record: Record, runner: CellRunner, model: Ref, dataset: Ref) -> tuple[dict, dict]:
    """A record without ``settings``: its recipe and hyperparameters where they differ from the preset's."""
    spec = runner.ws.plugins.models.get(record["model"])
    preset = dataclasses.asdict(recipe_for(record["preset"], record["method"], spec, model.kwargs, dataset.name))
    recipe = {k: v for k, v in record["recipe"].items() if k in preset and preset[k] != v}
    defaults = runner.ws.resolver.cell(record["method"], model, dataset, record["seed"], Overrides()).hparam_values
    return recipe, {k: v for k, v in record["hparams"].items() if k in defaults and defaults[k] != v}


def export_module(record: Record, classes: tuple[int, ...], out: Path, runs: Path, fmt: str = "pt2") -> Path:
    """Rebuild the reused module of ``record`` for ``classes`` and save it as a torch.export program (``pt2``) or as
    ONNX (``onnx``, ``bench.report.onnx``): one program, two formats."""
    if record["error"]:
        raise UsageError(f"record {record['run_id']} failed ({record['error']}); nothing to export")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / ('module.' + fmt)}")
    if not any(tuple(t["classes"]) == canonical_task(classes) for t in record["tasks"]):
        done = ", ".join(",".join(map(str, t["classes"])) for t in record["tasks"]) or "none"
        raise UsageError(f"record {record['run_id']} has no module for task {','.join(map(str, classes))} "
                         f"(tasks: {done})")
    if fmt == "onnx":
        require_onnx()  # before any work
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(module_of(record, classes, runs), (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes={"x": {0: batch}})
    _save(onnx_bytes(program) if fmt == "onnx" else _pt2_bytes(program), out)
    return out


def module_of(record: Record, classes: tuple[int, ...], runs: Path) -> Normalized:
    """The reused, fine-tuned module of ``record`` for ``classes`` (logits in that order), rebuilt read-only,
    images in [0, 1] in."""
    grid = GridConfig(methods=(record["method"],), models=(), datasets=(), preset=record["preset"], out=runs,
                      device="cpu", quiet=True)
    runner = CellRunner(Workspace(grid, get_plugins(), torch.device("cpu"), Bars(quiet=True), read_only=True))
    r = resolved_from(record, runner)
    directory = runs / record["run_id"]
    task = canonical_task(classes)  # what the store holds: the task's classes sorted
    try:
        trained = runner.train.run(r)
        modules, _ = runner.modularize.run(r, trained, record["threshold"])
        ctx = runner.modularize.context(r, trained, record["threshold"])
        stored = runner.reuse.stored(r, trained, modules, ctx, directory, task, runner.evaluate.reference(r))
        headed = stored.info.get("finetune_kept", True)
        module = runner.reuse.module(r, trained, modules, ctx, task, headed)
    except StageMissing as exc:
        raise StageMissing(f"cannot export {record['run_id']}: {exc}") from None
    module.load_state_dict(stored.tensors)
    if not (runner.reuse.finetunes(r) and headed):
        module = _Columns(module, classes)  # the model's logits: the task's columns, in the order given
    elif classes != task:
        module = _Columns(module, tuple(task.index(c) for c in classes))  # the head's: the sorted classes
    return Normalized(module.eval(), ctx.data.mean, ctx.data.std).eval()


def _pt2_bytes(program: torch.export.ExportedProgram) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _save(data: bytes, out: Path) -> None:
    """Save atomically (a failed write leaves no half file at ``out``); a place that cannot be written is one line."""
    try:
        atomic_write(out, data)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
