"""``bench export``: a reused module as a self-contained ``torch.export`` program.

The module is rebuilt from the run's cached stages (trained model, module masks, fine-tuned
weights) exactly as the record measured it, wrapped with the data set's normalisation, and saved
with ``torch.export.save``: it takes float images in [0, 1], shape (batch, 3, 32, 32), and returns
logits over the task's classes, in the order of ``--task``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import CorruptArtifact, UsageError
from bench.grid.config import GridConfig, Overrides
from bench.grid.presets import recipe_for
from bench.modular.head import attach_head
from bench.pipeline import store
from bench.pipeline.cell import Session
from bench.pipeline.progress import Bars
from bench.plugins.manager import get_plugins
from bench.refs import Ref


class Normalized(nn.Module):
    """``module((x - mean) / std)``: images in [0, 1] in, the module's logits out."""

    def __init__(self, module: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module((x - self.mean) / self.std)


def _args(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(values.items()))


def _grid_of(record: dict[str, Any], runs: Path) -> GridConfig:
    """The grid that reproduces the record's cell: its preset plus the values that differed from it."""
    plugins = get_plugins()
    spec = plugins.models.get(record["model"])
    base = dataclasses.asdict(recipe_for(record["preset"], record["method"], spec, record["model_args"],
                                         record["dataset"]))
    recipe = {k: v for k, v in record["recipe"].items() if base.get(k) != v}
    method = plugins.methods.get(record["method"])
    defaults = method.hparams(spec)
    default_values = dataclasses.asdict(defaults) if dataclasses.is_dataclass(defaults) else {}
    hparams = {k: v for k, v in record["hparams"].items() if default_values.get(k) != v}
    return GridConfig(methods=(record["method"],), models=(Ref(record["model"], _args(record["model_args"])),),
                      datasets=(Ref(record["dataset"], _args(record["dataset_args"])),), seeds=(record["seed"],),
                      thresholds=(record["threshold"],), preset=record["preset"],
                      overrides=Overrides(_args(recipe), ((record["method"], _args(hparams)),) if hparams else ()),
                      out=runs, device="cpu", quiet=True)


def export_module(record: dict[str, Any], classes: tuple[int, ...], out: Path, runs: Path) -> Path:
    """Rebuild the reused module of ``record`` for ``classes`` and save it as a torch.export program."""
    task = next((t for t in record.get("tasks") or [] if tuple(t["classes"]) == classes), None)
    if task is None or "module_file" not in task:
        done = ", ".join(",".join(map(str, t["classes"])) for t in record.get("tasks") or []) or "none"
        raise UsageError(f"record {record['run_id']} has no module for task {','.join(map(str, classes))} "
                         f"(tasks: {done})")
    grid = _grid_of(record, runs)
    session = Session(grid, get_plugins(), torch.device("cpu"), Bars(quiet=True))
    r = session.resolve(record["method"], grid.models[0], grid.datasets[0], record["seed"])
    directory = session.train_dir(r)
    if not (directory / "train.json").exists():
        raise UsageError(f"the trained model of {record['run_id']} is not in {runs} (run `bench run` again)")
    trained = session.trained(r)
    activity = session.activity_of(r, trained)
    modules, _ = session.modules(r, trained, record["threshold"], activity)
    ctx = session.stage_context(r, trained, record["threshold"], activity)
    module = r.method.compose(ctx, trained.model, modules, classes)
    if session.finetunes(r):
        module = attach_head(module, ctx.num_classes, len(classes))
    tasks_dir = store.threshold_dir(directory, record["threshold"]) / "tasks"
    entry = store.read_json(tasks_dir / task["module_file"].replace(".pt", ".json")) or {}
    try:
        module.load_state_dict(store.load_tensors(tasks_dir / task["module_file"], entry.get("module_sha256")))
    except CorruptArtifact as exc:
        raise UsageError(f"{exc}; run `bench run` again to rebuild it") from None
    if not session.finetunes(r):
        module = _Columns(module, classes)
    wrapped = Normalized(module.eval(), ctx.data.mean, ctx.data.std).eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(wrapped, (torch.rand(2, 3, 32, 32),), dynamic_shapes={"x": {0: batch}})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out))
    return out


class _Columns(nn.Module):
    """The task's columns of a module that was reused without a head (the standard model)."""

    def __init__(self, module: nn.Module, classes: tuple[int, ...]) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("columns", torch.tensor(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).index_select(1, self.columns)
