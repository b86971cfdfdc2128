"""The grid: expand it into cells, check it before anything runs, and hand it to an executor.

The standard cell of every model / data set / seed is added automatically (every other method is
measured against it), and so is the standard teacher of a distilled model (DeiT), trained once
and reused. Cells run dependencies first.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from rich.console import Console

from bench.errors import UsageError
from bench.grid.config import CellConfig, GridConfig, coerce_fields
from bench.grid.presets import recipe_for, with_overrides
from bench.pipeline.cell import STANDARD, Session
from bench.pipeline.env import resolve_device
from bench.pipeline.executors import get_executor
from bench.pipeline.progress import Bars, setup_logging
from bench.plugins.manager import Plugins, get_plugins
from bench.protocol.recipe import Recipe
from bench.refs import Ref

log = logging.getLogger("bench")


def canonical_grid(grid: GridConfig, plugins: Plugins) -> GridConfig:
    """``grid`` with every name resolved (aliases, typos -> UsageError) and every value checked."""
    if not grid.methods or not grid.models or not grid.datasets or not grid.seeds:
        raise UsageError("nothing to run: give at least one method, model, data set and seed")
    methods = tuple(dict.fromkeys(plugins.methods.canonical(m) for m in grid.methods))
    models = [plugins.model_ref(ref.name, ref.kwargs) for ref in grid.models]
    datasets = tuple(Ref(plugins.datasets.canonical(d.name), d.args) for d in grid.datasets)
    for method_name, _ in grid.overrides.methods:
        if plugins.methods.canonical(method_name) not in methods:
            raise UsageError(f"--set {method_name}.…: method '{method_name}' is not part of this run")
    for name in methods:
        method = plugins.methods.get(name)
        for ref in models:
            spec = plugins.models.get(ref.name)
            if spec.family not in method.families:
                raise UsageError(f"method '{name}' does not support {spec.family} models like '{ref.name}'")
            hparams = method.hparams(spec)
            if dataclasses.is_dataclass(hparams):
                values = coerce_fields(type(hparams), grid.overrides.for_method(name), f"method {name}")
                dataclasses.replace(hparams, **values)  # runs the dataclass's own checks
    recipe_values = coerce_fields(Recipe, dict(grid.overrides.recipe), "recipe")
    for ref in models:
        for dataset in datasets:
            for name in methods:
                with_overrides(recipe_for(grid.preset, name, plugins.models.get(ref.name), ref.kwargs, dataset.name),
                               recipe_values)
    if any(not 0 < t <= 1 for t in grid.thresholds) or not grid.thresholds:
        raise UsageError(f"thresholds must be in (0, 1], got {list(grid.thresholds)}")
    return dataclasses.replace(grid, methods=methods, models=tuple(models), datasets=datasets)


def expand(grid: GridConfig, plugins: Plugins) -> list[CellConfig]:
    """The cells of a canonical grid, dependencies (standard models, teachers) first."""
    cells: list[CellConfig] = []
    for dataset in grid.datasets:
        for seed in grid.seeds:
            for model in grid.models:
                teacher = plugins.teacher_ref(model)
                if teacher is not None and teacher not in grid.models:
                    cells.append(CellConfig(STANDARD, teacher, dataset, seed, grid, record=False))
                for method in (STANDARD, *[m for m in grid.methods if m != STANDARD]):
                    cells.append(CellConfig(method, model, dataset, seed, grid))
    return list(dict.fromkeys(cells))


def check_data(grid: GridConfig, session: Session) -> None:
    """Load every data set once (missing files, bad options) and check the tasks' class ids."""
    for dataset in grid.datasets:
        data = session.data(dataset, Recipe(epochs=1).val_fraction)
        for classes in grid.tasks:
            data.task(classes)


def run_grid(grid: GridConfig, executor: str = "local", console: Console | None = None,
             executor_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run every cell of ``grid``; returns the records written (failed cells carry ``error``)."""
    console = console or Console(stderr=True)
    setup_logging(console, grid.quiet)
    plugins = get_plugins(grid.plugins_dir)
    grid = canonical_grid(grid, plugins)
    device = resolve_device(grid.device)
    torch.set_flush_denormal(True)  # denormal weights late in a cosine schedule slow CPU math 10-40x
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed 32x32 shapes: let cuDNN pick its kernels
    cells = expand(grid, plugins)
    with Bars(console, quiet=grid.quiet) as bars:
        session = Session(grid, plugins, device, bars)
        check_data(grid, session)
        log.info("%d cells on %s, preset %s, results in %s", len(cells), device, grid.preset, grid.out)
        return get_executor(executor, **(executor_options or {})).run(cells, session)
