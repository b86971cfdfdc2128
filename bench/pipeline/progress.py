"""Progress bars and logging on one rich console.

One ``rich.progress.Progress`` holds a task per level (grid, stage, batches), never nested
Progress objects; log lines go through a ``RichHandler`` on the same console, so per-epoch
metrics also reach a Slurm log where bars are invisible. ``quiet`` turns the bars off.
"""

from __future__ import annotations

import logging
from types import TracebackType

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

log = logging.getLogger("bench")

# Redraws per second: enough to look alive, few enough not to take the GIL from a 2-core training loop.
REFRESH_PER_SECOND = 4


def setup_logging(console: Console, quiet: bool = False) -> None:
    """Send the 'bench' logger to ``console`` (warnings only when ``quiet``)."""
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


class Bars:
    """The grid / stage / batch bars of a run (all no-ops when quiet)."""

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress = None if quiet else Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False, refresh_per_second=REFRESH_PER_SECOND,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None and self._tasks:
            self._progress.stop()

    def start(self, level: str, description: str, total: int) -> None:
        """(Re)start the bar of ``level`` ('grid', 'stage', 'batch') with a new total."""
        if self._progress is None:
            return
        if not self._tasks:  # the display starts with its first bar: an early error leaves no empty line
            self._progress.start()
        if level in self._tasks:
            self._progress.reset(self._tasks[level], total=total, description=description, visible=True)
        else:
            self._tasks[level] = self._progress.add_task(description, total=total)

    def advance(self, level: str, steps: int = 1) -> None:
        """Move the bar of ``level`` on."""
        if self._progress is not None and level in self._tasks:
            self._progress.advance(self._tasks[level], steps)

    def describe(self, level: str, description: str) -> None:
        """Change the label of the bar of ``level``."""
        if self._progress is not None and level in self._tasks:
            self._progress.update(self._tasks[level], description=description)

    def hide(self, level: str) -> None:
        """Hide the bar of ``level`` until it is started again."""
        if self._progress is not None and level in self._tasks:
            self._progress.update(self._tasks[level], visible=False)
