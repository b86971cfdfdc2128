"""Executors for more than one machine: Ray tasks and Slurm job arrays (through submitit).

Both run each cell with ``run_cell_here`` in a fresh worker process, in two waves (the standard
models and teachers every other cell depends on, then the rest), skip cells whose records exist
without error, and let the store's locks and caches sort out cells that share a stage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.grid.config import CellConfig

log = logging.getLogger("bench")


def run_cell_here(cell: CellConfig) -> list[dict[str, Any]]:
    """Run one cell in this process (what a Ray task or a Slurm job executes)."""
    import torch

    from bench.pipeline.cell import Session
    from bench.pipeline.env import resolve_device
    from bench.pipeline.progress import Bars
    from bench.plugins.manager import get_plugins

    torch.set_flush_denormal(True)
    session = Session(cell.grid, get_plugins(cell.grid.plugins_dir), resolve_device(cell.grid.device),
                      Bars(quiet=True))
    return session.run_cell(cell)


def waves(cells: list[CellConfig]) -> list[list[CellConfig]]:
    """Dependencies (standard models, teachers) first, then every other cell."""
    first = [c for c in cells if c.method == "standard"]
    rest = [c for c in cells if c.method != "standard"]
    return [w for w in (first, rest) if w]


def pending(cells: list[CellConfig], session: Any) -> tuple[list[CellConfig], list[dict[str, Any]]]:
    """Cells still to run, and the records of those already finished."""
    todo, done = [], []
    for cell in cells:
        records = session.finished(cell)
        if records is None:
            todo.append(cell)
        else:
            done.extend(records)
    return todo, done


class RayExecutor:
    """Each cell a Ray task (one GPU each when the run uses CUDA); ``address`` joins a cluster."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def run(self, cells: list[CellConfig], session: Any) -> list[dict[str, Any]]:
        """Submit the cells wave by wave and gather their records."""
        try:
            import ray
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'modbench[ray]'") from None
        ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        gpus = 1 if session.device.type == "cuda" else 0
        task = ray.remote(num_gpus=gpus)(run_cell_here)
        records: list[dict[str, Any]] = []
        for wave in waves(cells):
            todo, done = pending(wave, session)
            records.extend(done)
            log.info("ray: %d cells submitted, %d already done", len(todo), len(done))
            for result in ray.get([task.remote(cell) for cell in todo]):
                records.extend(result)
        return records


class SlurmExecutor:
    """Each wave a Slurm job array submitted with submitit (``partition``; logs under runs/.slurm)."""

    def __init__(self, partition: str | None = None, cluster: str | None = None, timeout_min: int = 24 * 60) -> None:
        self.partition = partition
        self.cluster = cluster
        self.timeout_min = timeout_min

    def run(self, cells: list[CellConfig], session: Any) -> list[dict[str, Any]]:
        """Submit each wave as a job array and wait for it."""
        try:
            import submitit
        except ImportError:
            raise UsageError("--executor slurm needs submitit: pip install 'modbench[slurm]'") from None
        folder = Path(session.grid.out) / ".slurm"
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        parameters: dict[str, Any] = {"timeout_min": self.timeout_min}
        if executor.cluster == "slurm":
            parameters["slurm_partition"] = self.partition
            parameters["gpus_per_node"] = 1 if session.device.type == "cuda" else 0
        executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
        records: list[dict[str, Any]] = []
        for wave in waves(cells):
            todo, done = pending(wave, session)
            records.extend(done)
            jobs = executor.map_array(run_cell_here, todo) if todo else []
            log.info("slurm: %d jobs submitted (%s), %d cells already done", len(jobs), folder, len(done))
            for job in jobs:
                records.extend(job.result())
        return records
