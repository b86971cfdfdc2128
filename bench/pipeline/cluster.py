"""Executors for more than one machine: Ray tasks and Slurm job arrays (through submitit).

Both share one wave loop (``WaveExecutor``): each cell runs with ``run_cell_here`` in a fresh
worker process, in two waves (the standard models and other dependencies, then the rest), cells
whose records exist and verify are skipped, and the store's locks and caches sort out cells that
share a stage.
"""

from __future__ import annotations

import importlib
import logging
import shutil
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.grid.config import CellConfig
from bench.pipeline.executors import split_finished
from bench.pipeline.worker import run_cell_here

log = logging.getLogger("bench")


def _require(module: str, extra: str) -> Any:
    """The cluster library ``module``, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"--executor {extra} needs {module}: pip install 'modbench[{extra}]'") from None


def waves(cells: list[CellConfig]) -> list[list[CellConfig]]:
    """Dependencies (standard models, teachers) first, then every other cell."""
    first = [c for c in cells if c.method == "standard" or not c.record]
    rest = [c for c in cells if c not in first]
    return [w for w in (first, rest) if w]


class WaveExecutor:
    """Runs the waves one after the other; a subclass submits one wave's cells and gathers their records."""

    name = ""

    def run(self, cells: list[CellConfig], runner: Any) -> list[dict[str, Any]]:
        """Submit the cells wave by wave, skipping finished ones, and gather every record."""
        self.start(runner)
        records: list[dict[str, Any]] = []
        for wave in waves(cells):
            done, todo = split_finished(wave, runner)
            records.extend(done)
            log.info("%s: %d cells submitted, %d already done", self.name, len(todo), len(wave) - len(todo))
            if todo:
                records.extend(self.submit(todo))
        return records

    def start(self, runner: Any) -> None:
        """Connect to the cluster (the runner says which device the cells use)."""

    def submit(self, cells: list[CellConfig]) -> list[dict[str, Any]]:
        """Run ``cells`` on the cluster and return their records."""
        raise NotImplementedError


class RayExecutor(WaveExecutor):
    """Each cell a Ray task (one GPU each when the run uses CUDA); ``address`` joins a cluster."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self._task: Any = None

    def start(self, runner: Any) -> None:
        """Start (or join) Ray and declare the cell task."""
        ray = _require("ray", "ray")
        ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        gpus = 1 if runner.ws.device.type == "cuda" else 0
        self._task = ray.remote(num_gpus=gpus)(run_cell_here)

    def submit(self, cells: list[CellConfig]) -> list[dict[str, Any]]:
        """One Ray task per cell, gathered."""
        import ray

        return [record for result in ray.get([self._task.remote(cell) for cell in cells]) for record in result]


class SlurmExecutor(WaveExecutor):
    """Each wave a Slurm job array submitted with submitit (``partition``; logs under runs/.slurm).

    ``cluster`` is submitit's cluster name; by default it must be Slurm (``sbatch`` on the PATH):
    a machine without Slurm is told so instead of quietly running the jobs here.
    """

    name = "slurm"

    def __init__(self, partition: str | None = None, cluster: str | None = None, timeout_min: int = 24 * 60) -> None:
        self.partition = partition
        self.cluster = cluster
        self.timeout_min = timeout_min
        self._executor: Any = None

    def start(self, runner: Any) -> None:
        """Set up the submitit executor."""
        submitit = _require("submitit", "slurm")
        if self.cluster is None and shutil.which("sbatch") is None:
            raise UsageError("--executor slurm: Slurm is not available here (no sbatch on the PATH); "
                             "use --executor local or run on a Slurm login node")
        folder = Path(runner.ws.out) / ".slurm"
        self._executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        parameters: dict[str, Any] = {"timeout_min": self.timeout_min}
        if self._executor.cluster == "slurm":
            parameters["slurm_partition"] = self.partition
            parameters["gpus_per_node"] = 1 if runner.ws.device.type == "cuda" else 0
        self._executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})

    def submit(self, cells: list[CellConfig]) -> list[dict[str, Any]]:
        """One job array for the wave; waits for it."""
        jobs = self._executor.map_array(run_cell_here, cells)
        return [record for job in jobs for record in job.result()]
