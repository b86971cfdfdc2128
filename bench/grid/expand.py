"""The grid, expanded: canonical names, every cell resolved once (so bad values stop the run early).

Cells are methods x models x data sets x seeds x setting variants (the product of ``--set``
sweeps). The standard cell of every model / data set / seed / recipe variant is added (every other
method is measured against it), and so are the standard teachers of distilled models and the
models post-training methods start from. Dependencies come first.
"""

from __future__ import annotations

import dataclasses
import logging

from bench.errors import UsageError
from bench.grid.config import CellConfig, GridConfig
from bench.grid.presets import check_preset
from bench.grid.resolve import STANDARD, Resolved, Resolver
from bench.plugins.manager import Plugins
from bench.refs import Ref

log = logging.getLogger("bench")


def canonical_grid(grid: GridConfig, plugins: Plugins) -> GridConfig:
    """``grid`` with every name resolved (aliases, typos and bad arguments -> UsageError)."""
    check_preset(grid.preset)
    resolver = Resolver(plugins, grid.preset)
    methods = tuple(dict.fromkeys(plugins.methods.canonical(m) for m in grid.methods))
    for method_name, _ in grid.overrides.methods:
        if method_name not in plugins.methods or plugins.methods.canonical(method_name) not in methods:
            raise UsageError(f"--set {method_name}.…: method '{method_name}' is not part of this run")
    models = tuple(dict.fromkeys(resolver.model(ref) for ref in grid.models))
    for method_name in methods:
        _check_families(plugins, method_name, models)
    datasets = tuple(dict.fromkeys(resolver.dataset(ref) for ref in grid.datasets))
    return dataclasses.replace(grid, methods=methods, models=models, datasets=datasets)


def expand(grid: GridConfig, plugins: Plugins) -> list[CellConfig]:
    """The cells of a canonical grid, dependencies first; every cell is resolved once here (checks)."""
    resolver = Resolver(plugins, grid.preset)
    cells: list[CellConfig] = []
    for dataset in grid.datasets:
        for seed in grid.seeds:
            for model in grid.models:
                for variant in grid.overrides.variants():
                    for method in (STANDARD, *[m for m in grid.methods if m != STANDARD]):
                        if not supports(plugins, method, model):
                            continue
                        r = resolver.cell(method, model, dataset, seed, variant)
                        cells.extend(_dependencies(resolver, r, grid))
                        cells.append(CellConfig(method, model, dataset, seed, grid, r.overrides))
    return list(dict.fromkeys(cells))


def supports(plugins: Plugins, method_name: str, model: Ref) -> bool:
    """Whether ``method_name`` can modularize models of ``model``'s family."""
    return plugins.models.get(model.name).family in plugins.methods.get(method_name).families


def _check_families(plugins: Plugins, method_name: str, models: tuple[Ref, ...]) -> None:
    """UsageError when no model of the grid suits the method; a note naming the models it skips."""
    skipped = [str(model) for model in models if not supports(plugins, method_name, model)]
    if len(skipped) == len(models):
        families = ", ".join(sorted(plugins.methods.get(method_name).families))
        raise UsageError(f"method '{method_name}' supports only {families} models; none of --models is one")
    if skipped:
        log.info("%s does not modularize %s: those cells are left out", method_name, ", ".join(skipped))


def _dependencies(resolver: Resolver, r: Resolved, grid: GridConfig) -> list[CellConfig]:
    """Cells that ``r`` needs trained first and that are not cells of the grid themselves (no record)."""
    needed = [d for d in (resolver.teacher_of(r), resolver.start_of(r)) if d is not None]
    return [CellConfig(d.method.name, d.model, d.dataset, d.seed, grid, d.overrides, record=False)
            for d in needed if not (d.method.name == STANDARD and d.model in grid.models)]
