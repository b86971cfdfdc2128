"""The grid, expanded: canonical names, every cell resolved once (so bad values stop the run early).

Cells are methods x models x data sets x seeds x setting variants (the product of ``--set``
sweeps). The standard cell of every model / data set / seed / recipe variant is added (every other
method is measured against it), and so are the standard teachers of distilled models and the
models post-training methods start from. Dependencies come first.
"""

from __future__ import annotations

import dataclasses

from bench.errors import UsageError
from bench.grid.config import CellConfig, GridConfig
from bench.grid.presets import check_preset
from bench.grid.resolve import STANDARD, Resolved, Resolver
from bench.plugins.manager import Plugins


def canonical_grid(grid: GridConfig, plugins: Plugins) -> GridConfig:
    """``grid`` with every name resolved (aliases, typos and bad arguments -> UsageError)."""
    check_preset(grid.preset)
    resolver = Resolver(plugins, grid.preset)
    methods = tuple(dict.fromkeys(plugins.methods.canonical(m) for m in grid.methods))
    for method_name, _ in grid.overrides.methods:
        if method_name not in plugins.methods or plugins.methods.canonical(method_name) not in methods:
            raise UsageError(f"--set {method_name}.…: method '{method_name}' is not part of this run")
    models = tuple(dict.fromkeys(resolver.model(ref) for ref in grid.models))
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
                        r = resolver.cell(method, model, dataset, seed, variant)
                        cells.extend(_dependencies(resolver, r, grid))
                        cells.append(CellConfig(method, model, dataset, seed, grid, r.overrides))
    return list(dict.fromkeys(cells))


def _dependencies(resolver: Resolver, r: Resolved, grid: GridConfig) -> list[CellConfig]:
    """Cells that ``r`` needs trained first and that are not cells of the grid themselves (no record)."""
    needed = [d for d in (resolver.teacher_of(r), resolver.start_of(r)) if d is not None]
    return [CellConfig(d.method.name, d.model, d.dataset, d.seed, grid, d.overrides, record=False)
            for d in needed if not (d.method.name == STANDARD and d.model in grid.models)]
