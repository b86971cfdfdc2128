"""The grid, run: expand it into cells, check the data, and hand the cells to an executor.

The standard cell of every model / data set / seed is added automatically (every other method is
measured against it), and so are the dependencies of distilled and post-training models; cells
run dependencies first (``bench.grid.expand``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.data import DataBundle
from bench.errors import UsageError
from bench.grid.config import CellConfig, GridConfig
from bench.grid.expand import canonical_grid, expand
from bench.pipeline.cell import CellRunner
from bench.pipeline.env import prepare_process, resolve_device
from bench.pipeline.executors import get_executor
from bench.pipeline.progress import Bars, setup_logging
from bench.pipeline.scenarios.composition import CompositionStep
from bench.pipeline.workspace import Workspace
from bench.plugins.manager import get_plugins
from bench.record import BadRecord, Record, read_record

log = logging.getLogger("bench")


def check_data(cells: list[CellConfig], runner: CellRunner) -> None:
    """Load every data set once (missing files, bad options) and check the tasks' class ids."""
    seen: set[int] = set()
    for cell in cells:
        data: DataBundle = runner.ws.data_of(runner.resolve(cell))
        if id(data) not in seen:
            seen.add(id(data))
            for classes in cell.grid.tasks:
                data.task(classes)
            patch = cell.grid.scenarios.patch
            if patch is not None and patch.without is not None:
                data.task((patch.without,))


def check_out(out: Path) -> None:
    """UsageError unless ``out`` is a folder (or can become one) that this process can write in."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the runs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def plan(grid: GridConfig) -> tuple[GridConfig, list[CellConfig]]:
    """The canonical grid and its cells (every name and value checked)."""
    plugins = get_plugins(grid.plugins_dir)
    grid = canonical_grid(grid, plugins)
    return grid, expand(grid, plugins)


def run_grid(grid: GridConfig, executor: str = "local", console: Console | None = None,
             executor_options: dict[str, Any] | None = None, retry_failed: bool = False) -> list[Record]:
    """Run every cell of ``grid``; returns the records written (failed cells carry ``error``).

    With ``retry_failed`` only the cells whose records hold an error run again.
    """
    console = console or Console(stderr=True)
    setup_logging(console, grid.quiet)
    grid, cells = plan(grid)
    device = resolve_device(grid.device)
    with Bars(console, quiet=grid.quiet) as bars:
        runner = CellRunner(Workspace(grid, get_plugins(grid.plugins_dir), device, bars))
        prepare_process(any(runner.resolve(cell).recipe.deterministic for cell in cells))
        if retry_failed:
            cells = failed_cells(cells, runner)
        check_data(cells, runner)
        check_out(grid.out)
        log.info("%d cells on %s, preset %s, results in %s", len(cells), device, grid.preset, grid.out)
        records = get_executor(executor, **(executor_options or {})).run(cells, runner)
        CompositionStep(runner).run(cells)
        return records


def failed_cells(cells: list[CellConfig], runner: CellRunner) -> list[CellConfig]:
    """The cells whose record (at any threshold) holds an error or a ``last_error``, or cannot be read, and the
    dependency-only cells.

    The standard models the failed cells are measured against are loaded (or trained) on the way.
    """
    def failed(cell: CellConfig) -> bool:
        r = runner.resolve(cell)
        paths = [runner.record_dir(r, threshold) / "record.json" for threshold in cell.grid.thresholds]
        return any(path.exists() and _holds_error(path) for path in paths)

    chosen = [cell for cell in cells if not cell.record or failed(cell)]
    log.info("retrying %d failed cells", sum(cell.record for cell in chosen))
    return chosen


def _holds_error(path: Path) -> bool:
    """Whether the record at ``path`` failed, its last re-run failed, or it cannot be read (a run rewrites it)."""
    try:
        record = read_record(path)
    except BadRecord:
        return True
    return record["error"] is not None or record["last_error"] is not None
