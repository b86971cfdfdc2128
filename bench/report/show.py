"""``bench show``: find one record and lay it out for reading (it reads the record only, never computes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from bench.errors import UsageError
from bench.pipeline import layout, store
from bench.record import Record, read_record
from bench.report.rows import label

HIDDEN_TASK_FIELDS = ("seconds", "module_file")


def find_record(run: Path, runs: Path) -> Record:
    """The record at ``run``: a record file, the folder holding it, or a run_id under ``runs``.

    A file that is not a readable record raises ``bench.record.BadRecord`` naming it.
    """
    for candidate in (run, run / "record.json", runs / run, runs / run / "record.json"):
        if candidate.is_file():
            return read_record(candidate)
    raise UsageError(f"no record at {run} (give a record.json, its folder, or a run_id under {runs})")


def module_problems(directory: Path, record: Record) -> list[str]:
    """One line per task of ``record`` (in ``directory``) whose reused module's files are missing or damaged."""
    problems = (store.check_entry(layout.task_file(directory, tuple(task["classes"]))) for task in record["tasks"])
    return [f"{problem}; `bench run` rebuilds it" for problem in problems if problem is not None]


def _cell(value: Any) -> Text:
    if value is None:
        return Text("–")
    return Text(f"{value:.4g}" if isinstance(value, float) else str(value))


def _pairs(title: str, values: dict[str, Any] | None) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in (values or {}).items():
        if isinstance(value, dict) and value:
            for inner, item in value.items():
                table.add_row(Text(f"{key}.{inner}"), _cell(item))
        else:
            table.add_row(Text(key), _cell(value))
    return table


def _identity(record: Record) -> dict[str, Any]:
    identity = {"run_id": record["run_id"], "method": record["method"],
                "model": label(record["model"], record["model_args"]),
                "dataset": label(record["dataset"], record["dataset_args"]), "seed": record["seed"],
                "preset": record["preset"], "threshold": record["threshold"], "precision": record["precision"],
                "deterministic": record["deterministic"], "config_key": record["config_key"]}
    if record["error"]:
        identity["error"] = record["error"]
    return identity


def _baseline(record: Record) -> dict[str, Any]:
    baseline = record["baseline"]
    if baseline is None:
        return {"flag": "not recorded"}
    return {"flag": baseline["flag"] or "none (the standard model learned)",
            "standard test acc": baseline["standard_test_acc"], "method test acc": baseline["method_test_acc"],
            **({"why": baseline["message"]} if baseline["message"] else {})}


def _tasks(tasks: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="tasks", title_justify="left")
    columns = list(dict.fromkeys(c for task in tasks for c in task if c not in HIDDEN_TASK_FIELDS))
    for column in columns:
        table.add_column(column, justify="right")
    for task in tasks:
        table.add_row(*(_cell(task.get(c, "–")) for c in columns))
    return table


def render_record(record: Record) -> Group:
    """A record as a few small tables: identity, baseline, last error, settings, environment, figures, tasks."""
    parts: list[Any] = [_pairs("run", _identity(record)), _pairs("baseline", _baseline(record))]
    if record["last_error"]:
        parts.append(_pairs("last error (a re-run failed; the figures are from the run before)",
                            dict(record["last_error"])))
    parts += [_pairs("hyperparameters", record["hparams"]), _pairs("recipe", record["recipe"]),
              _pairs("environment", record["env"]), _pairs("model", record["model_metrics"]),
              _pairs("modularization", record["modularization"])]
    if record["tasks"]:
        parts.append(_tasks(record["tasks"]))
    return Group(*parts)
