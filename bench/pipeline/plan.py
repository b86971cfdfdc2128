"""``bench run --dry-run``: the cells a grid will compute, which are done, and an estimate of its time.

The estimate comes from this device: each distinct (method, model, recipe) runs a few training
steps of its real loss on random images at the recipe's batch size and precision; a cell then
costs its training steps (epochs x batches) plus the fine-tuning steps of its tasks and their
controls, at that speed. Cached stages cost nothing. A post-training method's search is not estimated.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from bench.data import DataBundle, TensorData
from bench.errors import BenchError
from bench.grid.config import CellConfig, GridConfig
from bench.grid.resolve import Resolved
from bench.modular.groups import modular_groups
from bench.pipeline.cell import CellRunner
from bench.pipeline.env import resolve_device, synchronize
from bench.pipeline.progress import Bars
from bench.pipeline.training import autocast, cross_entropy_loss, make_optimizer
from bench.pipeline.workspace import Workspace
from bench.plugins.manager import get_plugins
from bench.protocol.method import TrainContext

TIMED_STEPS = 2


@dataclass
class PlannedCell:
    """One cell of the plan: done already, or its estimated seconds (None when not estimated)."""

    cell: CellConfig
    done: bool
    seconds: float | None


def step_seconds(r: Resolved, num_classes: int, device: torch.device, precision: str) -> float:
    """Median seconds of one training step of ``r``'s method and model (its real loss, random images)."""
    batch = r.recipe.batch_size
    images = TensorData(torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8),
                        torch.arange(batch) % num_classes)
    data = DataBundle("random", num_classes, [str(c) for c in range(num_classes)], images, images, images,
                      (0.5,) * 3, (0.25,) * 3, "none")
    times: list[float] = []

    def timed_fit(model: torch.nn.Module, loss_fn: Callable | None = None, groups: list | None = None) -> list:
        loss_fn = loss_fn or cross_entropy_loss
        optimizer = make_optimizer(r.recipe, groups or modular_groups(model, r.recipe.lr), r.recipe.lr)  # as fit
        x = ((images.x.float() / 255 - 0.5) / 0.25).to(device)
        y = images.y.to(device)
        for step in range(TIMED_STEPS + 1):
            synchronize(device)
            start = time.perf_counter()
            with autocast(device, precision):
                loss, _ = loss_fn(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            synchronize(device)
            if step:  # the first step warms up
                times.append(time.perf_counter() - start)
        return []

    def new_model() -> torch.nn.Module:
        return r.spec.build(num_classes, **r.model.kwargs).to(device)

    ctx = TrainContext(r.spec, r.model.kwargs, data, device, r.recipe, r.hparams, r.seed, fit=timed_fit,
                       task_loss=cross_entropy_loss, new_model=new_model)
    ctx.model = r.method.build(ctx).to(device)
    r.method.train(ctx)
    return statistics.median(times)


class Planner:
    """Estimates cells from step timings measured once per distinct (method, model, recipe)."""

    def __init__(self, runner: CellRunner, on_measure: Callable[[str], None] = lambda label: None) -> None:
        self.runner = runner
        self.on_measure = on_measure
        self._steps: dict[tuple, float] = {}

    def train_size(self, r: Resolved) -> tuple[int, int]:
        """(training images, classes) of ``r``'s data set: loaded when possible, else the spec's hint."""
        try:
            data = self.runner.ws.data_of(r)
            return len(data.train), data.num_classes
        except BenchError:
            spec = self.runner.ws.plugins.datasets.get(r.dataset.name)
            if spec.train_size is None or spec.num_classes is None:
                raise
            return round(spec.train_size * (1 - r.recipe.val_fraction)), spec.num_classes

    def step(self, r: Resolved, num_classes: int) -> float:
        """Seconds per training step of ``r`` (measured once per method, model and recipe)."""
        key = (r.method.name, str(r.model), r.recipe, num_classes)
        if key not in self._steps:
            self.on_measure(f"{r.method.name} {r.model}")
            ws = self.runner.ws
            self._steps[key] = step_seconds(r, num_classes, ws.device, ws.precision(r))
        return self._steps[key]

    def estimate(self, cell: CellConfig) -> PlannedCell:
        """The cell's status and estimated seconds."""
        r = self.runner.resolve(cell)
        if cell.record and self.runner.finished(cell) is not None:
            return PlannedCell(cell, True, 0.0)
        train_images, classes = self.train_size(r)
        seconds = 0.0
        if r.method.starts_from is None and not self.runner.train.stored(r):
            seconds += r.recipe.epochs * math.ceil(train_images / r.recipe.batch_size) * self.step(r, classes)
        if cell.record and r.method.finetune:
            standard = self.runner.ws.resolver.standard_of(r)
            for task in cell.grid.tasks:
                task_images = train_images * len(task) / classes
                steps = r.recipe.finetune_epochs * math.ceil(task_images / r.recipe.batch_size)
                fine_tunings = len(cell.grid.thresholds) * (1 + len(cell.grid.controls))  # a control fine-tunes too
                seconds += steps * self.step(standard, classes) * fine_tunings
        searched = r.method.starts_from is not None and cell.record
        return PlannedCell(cell, False, None if searched else seconds)


def print_plan(grid: GridConfig, console: Console | None = None) -> list[PlannedCell]:
    """Print the cells of ``grid``, which are done, and the estimated time of the rest."""
    from bench.pipeline.runner import plan

    console = console or Console()
    grid, cells = plan(grid)
    device = resolve_device(grid.device)
    runner = CellRunner(Workspace(replace(grid, quiet=True), get_plugins(grid.plugins_dir), device,
                                  Bars(quiet=True)))
    planner = Planner(runner, lambda label: console.print(f"timing a training step of {label} on {device}",
                                                          style="dim"))
    planned = [planner.estimate(cell) for cell in cells]
    console.print(_table(planned, device))
    return planned


def _table(planned: list[PlannedCell], device: torch.device) -> Table:
    totals = planned_seconds(planned)
    unknown = totals["not_estimated"]
    caption = (f"{len(planned)} cells, {len(planned) - totals['to_run']} done; about {_duration(totals['seconds'])} "
               f"on {device} for the rest" + (f", plus {unknown} searches not estimated" if unknown else "")
               + "; start one bench run per model or method to share a big GPU, or --executor ray/slurm.")
    table = Table(title="bench run --dry-run", caption=caption, caption_justify="left")
    for column in ("cell", "status", "estimate"):
        table.add_column(column, justify="right" if column == "estimate" else "left")
    for p in planned:
        status = "done" if p.done else ("to run" if p.cell.record else "dependency")
        estimate = "–" if p.done else ("search: not estimated" if p.seconds is None else _duration(p.seconds))
        table.add_row(p.cell.label, status, estimate)
    return table


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def planned_seconds(planned: list[PlannedCell]) -> dict[str, Any]:
    """Totals of a plan: cells to run, estimated seconds, cells not estimated."""
    todo = [p for p in planned if not p.done]
    return {"to_run": len(todo), "seconds": sum(p.seconds or 0.0 for p in todo),
            "not_estimated": sum(p.seconds is None for p in todo)}
