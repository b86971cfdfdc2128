"""``bench show``: find one record and lay it out for reading (it reads the record only, never computes)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from bench.errors import UsageError
from bench.pipeline import layout, store
from bench.record import Composition, Record, read_composition, read_record
from bench.report.rows import label

HIDDEN_TASK_FIELDS = ("seconds", "module_file", "controls")  # controls: a table of their own


def find_record(run: Path, runs: Path) -> Record:
    """The record at ``run``: a record file, the folder holding it, or a run_id under ``runs``.

    A file that is not a readable record raises ``bench.record.BadRecord`` naming it.
    """
    for candidate in (run, run / "record.json", runs / run, runs / run / "record.json"):
        if candidate.is_file():
            return read_record(candidate)
    raise UsageError(f"no record at {run} (give a record.json, its folder, or a run_id under {runs})")


def find_composition(run: Path, runs: Path) -> Composition | None:
    """The composition record at ``run`` (a ``composition.json``, its folder, or either under ``runs``), or None."""
    for candidate in (run, run / "composition.json", runs / run, runs / run / "composition.json"):
        if candidate.is_file() and candidate.name == "composition.json":
            return read_composition(candidate)
    return None


def module_problems(directory: Path, record: Record) -> list[str]:
    """One line per task of ``record`` (in ``directory``) whose reused module's files are missing or damaged."""
    problems = (store.check_entry(layout.task_file(directory, tuple(task["classes"]))) for task in record["tasks"])
    return [f"{problem}; `bench run` rebuilds it" for problem in problems if problem is not None]


def cell_text(value: Any) -> str:
    """A record value as shown: floats with four significant digits, a missing value (None, NaN) as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def flat_pairs(values: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Key/value pairs as shown, one nested level flattened (``env.cuda``)."""
    pairs = []
    for key, value in (values or {}).items():
        if isinstance(value, dict) and value:
            pairs += [(f"{key}.{inner}", cell_text(item)) for inner, item in value.items()]
        else:
            pairs.append((key, cell_text(value)))
    return pairs


def _pairs(title: str, pairs: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in pairs:
        table.add_row(Text(key), Text(value))
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


def _cost(record: Record) -> dict[str, Any]:
    cost = record["cost"]
    if cost is None:
        return {"ratio": "not recorded"}
    ratio = "not comparable (other device, or imported)" if cost["ratio"] is None else f"{cost['ratio']:.2f}x"
    return {**{k: v for k, v in cost.items() if k != "ratio"}, "ratio": ratio}


def task_table(tasks: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The per-task figures (or any rows of figures) as a header and rows of shown values."""
    columns = list(dict.fromkeys(c for task in tasks for c in task if c not in HIDDEN_TASK_FIELDS))
    return columns, [[cell_text(task.get(c, "–")) for c in columns] for task in tasks]


def control_rows(tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per task and control: the task's classes, the control's kind and its figures."""
    return [{"task": ",".join(map(str, task["classes"])), "control": kind, **figures}
            for task in tasks for kind, figures in (task.get("controls") or {}).items()]


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(Text(v) for v in row))
    return table


def record_sections(record: Record) -> list[tuple[str, list[tuple[str, str]]]]:
    """The record as titled key/value sections: identity, baseline, last error, settings, environment, figures."""
    sections = [("run", flat_pairs(_identity(record))), ("baseline", flat_pairs(_baseline(record)))]
    if record["last_error"]:
        sections.append(("last error (a re-run failed; the figures are from the run before)",
                         flat_pairs(dict(record["last_error"]))))
    given = record.get("settings")
    if given and (given["recipe"] or given["hparams"]):
        named = {**given["recipe"], **{f"{record['method']}.{k}": v for k, v in given["hparams"].items()}}
        sections.append(("--set values it ran with", flat_pairs(named)))
    parts = {"hyperparameters": record["hparams"], "recipe": record["recipe"], "environment": record["env"],
             "model": record["model_metrics"], "modularization": record["modularization"], "cost": _cost(record)}
    if record.get("patching"):
        parts.update({"patching: settings": record["patching"]["settings"],
                      "patching: weak model": record["patching"]["weak"]})
    return sections + [(title, flat_pairs(values)) for title, values in parts.items()]


def render_record(record: Record) -> Group:
    """A record as a few small tables: identity, baseline, last error, settings, environment, figures, tasks."""
    parts: list[Any] = [_pairs(title, pairs) for title, pairs in record_sections(record)]
    if record["tasks"]:
        parts.append(_rows("tasks", record["tasks"]))
    controls = control_rows(record["tasks"])
    if controls:
        parts.append(_rows("controls (as many units per layer as the module, chosen another way)", controls))
    if record.get("patching"):
        parts.append(_rows("patching: patched classes", record["patching"]["entries"]))
    return Group(*parts)


def _rows(title: str, rows: Sequence[Mapping[str, Any]]) -> Table:
    """``rows`` as a table with a column per key."""
    return _table(title, *task_table(rows))


def render_composition(composition: Composition) -> Group:
    """A composition record: what it composed, its members, whose module each class took, and its accuracy."""
    identity = {key: composition[key] for key in ("run_id", "method", "family", "preset", "threshold", "selection",
                                                  "votes")}
    identity["dataset"] = label(composition["dataset"], composition["dataset_args"])
    identity.update({"settings": composition["settings"], "composed acc": composition["composed_acc"],
                     "seconds": composition["seconds"]})
    members = [{"member": i, "model": label(m["model"], m["model_args"]), "seed": m["seed"],
                "model acc": m["model_acc"], "own modules acc": m["own_acc"], "run_id": m["run_id"]}
               for i, m in enumerate(composition["members"])]
    return Group(_pairs("composition across models", flat_pairs(identity)), _rows("members", members),
                 _rows("module of each class", composition["choices"]),
                 _pairs("environment", flat_pairs(composition["env"])))
