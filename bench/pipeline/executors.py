"""Executors: where the cells of a grid run. Each calls the same ``CellRunner.run``.

``local`` runs cells in this process, one after another. ``ray`` makes each cell a Ray task with
one GPU (``--ray-address`` joins a cluster); ``slurm`` submits a job array through submitit. Both
run dependencies (standard models, teachers) in a first wave, skip cells whose records already
exist without error, and rely on the store's locks and caches when cells share a stage.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bench.errors import UsageError
from bench.grid.config import CellConfig

log = logging.getLogger("bench")


class Executor(Protocol):
    """Runs cells and returns their records."""

    def run(self, cells: list[CellConfig], runner: Any) -> list[dict[str, Any]]:
        """Run ``cells`` (dependencies first) with a ``CellRunner`` and return every record written."""
        ...


class LocalExecutor:
    """In process, sequential: the default, and the one that shows progress bars."""

    def run(self, cells: list[CellConfig], runner: Any) -> list[dict[str, Any]]:
        """Run the cells one by one with a grid-level progress bar."""
        records: list[dict[str, Any]] = []
        bars = runner.ws.bars
        bars.start("grid", "grid", len(cells))
        for cell in cells:
            bars.describe("grid", f"grid: {cell.label}")
            records.extend(runner.run(cell))
            bars.advance("grid")
        bars.describe("grid", "grid")
        return records


def get_executor(name: str, **options: Any) -> Executor:
    """The executor called ``name`` ('local', 'ray', 'slurm') with its options."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from bench.pipeline.cluster import RayExecutor

        return RayExecutor(**options)
    if name == "slurm":
        from bench.pipeline.cluster import SlurmExecutor

        return SlurmExecutor(**options)
    raise UsageError(f"unknown executor '{name}' (choose local, ray or slurm)")
