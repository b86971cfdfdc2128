"""Executors: where the cells of a grid run. Each calls the same ``CellRunner.run``.

``local`` runs cells on this machine: in this process one after another with its progress bars,
or side by side in worker processes (``--workers``, ``bench.pipeline.worker``). ``ray`` makes each
cell a Ray task with one GPU (``--ray-address`` joins a cluster); ``slurm`` submits a job array through submitit. Both
run dependencies (standard models, teachers) in a first wave, skip cells whose records already
exist without error, and rely on the store's locks and caches when cells share a stage.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from bench.errors import BenchError, UsageError
from bench.grid.config import CellConfig
from bench.pipeline.env import torch_threads
from bench.pipeline.worker import Workers, plan_workers, run_cell_here, start_worker

log = logging.getLogger("bench")


class Executor(Protocol):
    """Runs cells and returns their records."""

    def run(self, cells: list[CellConfig], runner: Any) -> list[dict[str, Any]]:
        """Run ``cells`` (dependencies first) with a ``CellRunner`` and return every record written."""
        ...


class LocalExecutor:
    """On this machine: ``workers`` processes ('auto': one per core on a CPU, this process alone on a GPU).

    One worker, one cell left to compute, or a plugin registered from an object in this process (which a
    new process would not have) runs the cells in this process, with the per-epoch progress bars.
    """

    def __init__(self, workers: str | int = 1) -> None:
        self.workers = workers

    def run(self, cells: list[CellConfig], runner: Any) -> list[dict[str, Any]]:
        """Run the cells, dependencies first, with a grid-level progress bar."""
        workers = plan_workers(self.workers, runner.ws.device)
        here_only = runner.ws.plugins.registered_here()
        if workers.count > 1 and here_only:
            log.info("plugins registered in this process (%s): the cells run here", ", ".join(here_only))
        with torch_threads(workers.threads):
            if workers.count > 1 and not here_only:
                done, todo = split_finished(cells, runner)
                if len(todo) > 1:
                    return done + PoolExecutor(workers).run(todo, runner)
            return self._in_process(cells, runner)

    @staticmethod
    def _in_process(cells: list[CellConfig], runner: Any) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        bars = runner.ws.bars
        bars.start("grid", "grid", len(cells))
        for cell in cells:
            bars.describe("grid", f"grid: {cell.label}")
            records.extend(runner.run(cell))
            bars.advance("grid")
        bars.describe("grid", "grid")
        return records


class PoolExecutor:
    """Cells side by side in worker processes started for the grid (spawned: the same on Linux, macOS and
    Windows). Dependencies are submitted first; a cell that needs a stage another worker is computing
    waits on the store's lock and then reads it."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers

    def run(self, cells: list[CellConfig], runner: Any) -> list[dict[str, Any]]:
        """Run ``cells`` in the workers; a line per finished cell and the grid bar show progress."""
        bars = runner.ws.bars
        bars.start("grid", f"grid: {len(cells)} cells in {self.workers.count} worker processes", len(cells))
        threads = f", {self.workers.threads} torch threads per cell" if self.workers.threads else ""
        log.info("%d cells in %d worker processes%s", len(cells), self.workers.count, threads)
        context = multiprocessing.get_context("spawn")
        log_queue = context.Queue()
        listener = logging.handlers.QueueListener(log_queue, *log.handlers)
        pool = ProcessPoolExecutor(self.workers.count, mp_context=context, initializer=start_worker,
                                   initargs=(self.workers.threads, log_queue, log.getEffectiveLevel()))
        records: list[dict[str, Any]] = []
        listener.start()
        try:
            started = time.perf_counter()
            futures: dict[Future, CellConfig] = {pool.submit(run_cell_here, cell): cell for cell in cells}
            for future in as_completed(futures):
                records.extend(_result(future, futures[future]))
                log.info("%s: done (%.0f s into the grid)", futures[future].label, time.perf_counter() - started)
                bars.advance("grid")
        except BaseException:  # Ctrl-C, SIGTERM (bench.errors.Terminated), a failing worker
            _stop(pool)
            raise
        finally:
            listener.stop()
        pool.shutdown()
        return records


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the cells not started and end the workers now: their stages in flight are lost (as in a killed
    run), finished ones are kept by the store. Without this, interpreter exit would wait for the cells being
    computed, and SIGTERM reaches this process alone."""
    workers = list(pool._processes.values())  # CPython's pool keeps its processes there (pid -> Process)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()


def _result(future: Future, cell: CellConfig) -> list[dict[str, Any]]:
    """A worker's records, or one line when its process died (killed, out of memory)."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise BenchError(f"a worker process died while running {cell.label} (killed or out of memory?); "
                         "finished stages are kept: run again, with fewer --workers if memory ran out") from None


def split_finished(cells: list[CellConfig], runner: Any) -> tuple[list[dict[str, Any]], list[CellConfig]]:
    """The records of cells already finished, and the cells still to compute."""
    records: list[dict[str, Any]] = []
    todo = []
    for cell in cells:
        done = runner.finished(cell)
        if done is None:
            todo.append(cell)
        else:
            records.extend(done)
    return records, todo


def get_executor(name: str, **options: Any) -> Executor:
    """The executor called ``name`` ('local', 'ray', 'slurm') with its options."""
    if name == "local":
        return LocalExecutor(**options)
    if name == "ray":
        from bench.pipeline.cluster import RayExecutor

        return RayExecutor(**options)
    if name == "slurm":
        from bench.pipeline.cluster import SlurmExecutor

        return SlurmExecutor(**options)
    raise UsageError(f"unknown executor '{name}' (choose local, ray or slurm)")
