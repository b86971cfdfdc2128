"""``bench show``: find one record and lay it out for reading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from bench.errors import UsageError
from bench.pipeline.store import read_json


def find_record(run: Path, runs: Path) -> dict[str, Any]:
    """The record at ``run``: a record file, the folder holding it, or a run_id under ``runs``."""
    for candidate in (run, run / "record.json", runs / run, runs / run / "record.json"):
        if candidate.is_file():
            record = read_json(candidate)
            if record is None:
                raise UsageError(f"{candidate} is not a readable record")
            return record
    raise UsageError(f"no record at {run} (give a record.json, its folder, or a run_id under {runs})")


def _pairs(title: str, values: dict[str, Any] | None) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in (values or {}).items():
        table.add_row(Text(key), Text(f"{value:.4g}" if isinstance(value, float) else str(value)))
    return table


def render_record(record: dict[str, Any]) -> Group:
    """A record as a few small tables: identity, environment, model, modularization, tasks."""
    identity = {k: record.get(k) for k in ("run_id", "method", "model", "model_args", "dataset", "seed",
                                            "preset", "threshold", "error")}
    parts: list[Any] = [_pairs("run", identity), _pairs("hyperparameters", record.get("hparams")),
                        _pairs("environment", record.get("env")), _pairs("model", record.get("model_metrics")),
                        _pairs("modularization", record.get("modularization"))]
    tasks = record.get("tasks") or []
    if tasks:
        table = Table(title="tasks", title_justify="left")
        columns = [c for c in tasks[0] if c != "seconds"]
        for column in columns:
            table.add_column(column, justify="right")
        for task in tasks:
            table.add_row(*(Text(f"{task[c]:.4g}" if isinstance(task[c], float) else str(task[c])) for c in columns))
        parts.append(table)
    return Group(*parts)
