"""What a worker process runs, and how many of them a local grid starts (``--workers``).

Small models leave a CPU's cores idle: two cells computed side by side, each on one core, finish
sooner than the same two one after the other on both cores (a width-0.25 ViT step took 57 ms on
one core and 43 ms on two on a 2-core machine, and two one-core steps side by side each still took
57 ms). ``auto`` starts one worker per core on a CPU (at most ``MAX_AUTO_WORKERS``) and none on a
GPU. Each cell computes on ``CORES // workers`` threads wherever it runs (a worker, or this
process when one cell is left), because CPU kernels sum in a thread-dependent order: a cell's
numbers then do not depend on how many cells its grid holds. The record's ``env.threads`` says
how many threads a cell had.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import UsageError
from bench.grid.config import CellConfig

CORES = torch.get_num_threads()  # torch's default: the machine's physical cores (or OMP_NUM_THREADS)
MAX_AUTO_WORKERS = 4  # each worker holds its own data sets and models in memory
ORPHANED_EXIT_CODE = 3  # a worker's exit status when the process that started it is gone


@dataclass(frozen=True)
class Workers:
    """How a local grid runs: ``count`` worker processes, ``threads`` torch threads per cell (0: torch's default)."""

    count: int
    threads: int


def plan_workers(requested: str | int, device: torch.device) -> Workers:
    """The workers for ``--workers`` ('auto' or a count) on ``device``; UsageError for a bad value."""
    if str(requested) == "auto":
        count = min(CORES, MAX_AUTO_WORKERS) if device.type == "cpu" else 1
    else:
        try:
            count = int(requested)
        except ValueError:
            count = 0
        if count < 1:
            raise UsageError(f"bad --workers '{requested}': give auto or a number of processes >= 1")
    return Workers(count, max(1, CORES // count) if device.type == "cpu" else 0)


def start_worker(threads: int, log_queue: Any, level: int) -> None:
    """A local worker's setup: it ends with its parent, computes on ``threads`` threads per cell, and sends its
    log lines (at ``level`` and above) to the parent through ``log_queue``, which shows them on its console
    beside the grid bar."""
    exit_with_parent()
    if threads:
        torch.set_num_threads(threads)
    log = logging.getLogger("bench")
    log.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
    log.setLevel(level)
    log.propagate = False


def exit_with_parent() -> None:
    """End this process as soon as the process that started it is gone, however it ended (``kill -9``
    included): a thread waits on the parent's sentinel, a pipe that closes when the parent exits (the same
    on Linux, macOS and Windows). The stage in flight is lost, as when a run is killed; finished ones are
    kept by the store. A no-op in a process that was not started by ``multiprocessing``."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_ready, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def _exit_when_ready(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(ORPHANED_EXIT_CODE)


def run_cell_here(cell: CellConfig) -> list[dict[str, Any]]:
    """Run one cell in this process (what a local worker, a Ray task or a Slurm job executes)."""
    from bench.pipeline.cell import CellRunner
    from bench.pipeline.env import prepare_process, resolve_device
    from bench.pipeline.progress import Bars
    from bench.pipeline.workspace import Workspace
    from bench.plugins.manager import get_plugins

    workspace = Workspace(cell.grid, get_plugins(cell.grid.plugins_dir), resolve_device(cell.grid.device),
                          Bars(quiet=True))
    runner = CellRunner(workspace)
    prepare_process(runner.resolve(cell).recipe.deterministic)
    return runner.run(cell)
