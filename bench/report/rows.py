"""Records -> one row per (record, task), with the record's configuration flattened into columns.

A configuration value is a column named ``cfg:<key>``: a recipe field (``cfg:epochs``), a method
hyperparameter (``cfg:nemo.alpha``), a model or data set argument (``cfg:model.width``) or the
resolved precision. ``swept_keys`` names those that differ between configurations of the same
data set, model and method: the values a sweep varied, which the tables and figures show.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from bench.errors import UsageError
from bench.record import CONTROL_KINDS, Record, as_record

CONFIG = "cfg:"
IDENTITY = ["dataset_name", "model_name", "method"]
RECORD_FIGURES = {"model_metrics": ("test_acc", "train_seconds"), "modularization": ("cohesion", "coupling")}
PATCH_STRATEGIES = ("replace", "calibrate")
TASK_FIGURES = ("module_acc", "module_acc_before_finetune", "standard_acc", "retention", "retention_sum",
                "weight_retention", "weight_retention_linear", "flops_ratio", "latency_ratio", "latency_ratio_b1",
                "weight_retention_merged", "flops_ratio_merged", "flops_ratio_dense")
CONTROL_FIGURES = ("module_acc", "module_acc_before_finetune", "weight_retention", "flops_ratio")
NOT_CONTROL_FIGURES = ("test_acc", "class_retention", "cohesion", "coupling", "cost_ratio", "retention",
                       "retention_sum", "latency_ratio", "latency_ratio_b1", "acc_delta")


def label(name: str, args: Mapping[str, Any] | None) -> str:
    """``vit_s:depth=4,width=0.25``: a model or data set as typed on the command line."""
    if not args:
        return name
    return f"{name}:" + ",".join(f"{k}={_plain(v)}" for k, v in sorted(args.items()))


def _plain(value: Any) -> Any:
    """A hashable, readable form of a configuration value (lists and dicts as JSON)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def config_values(record: Record) -> dict[str, Any]:
    """The record's configuration as ``cfg:<key>`` columns."""
    values: dict[str, Any] = {f"{CONFIG}{k}": _plain(v) for k, v in record["recipe"].items() if k != "precision"}
    values[f"{CONFIG}precision"] = record["precision"]
    for prefix, items in ((record["method"], record["hparams"]), ("model", record["model_args"]),
                          ("dataset", record["dataset_args"])):
        values.update({f"{CONFIG}{prefix}.{k}": _plain(v) for k, v in items.items()})
    return values


def record_row(record: Record) -> dict[str, Any]:
    """What every row of ``record`` shares: identity, flags, record-wide figures and the ``cfg:`` columns."""
    baseline = record["baseline"] or {}
    row: dict[str, Any] = {
        "dataset": label(record["dataset"], record["dataset_args"]),
        "model": label(record["model"], record["model_args"]),
        "dataset_name": record["dataset"], "model_name": record["model"], "method": record["method"],
        "family": record["family"], "preset": record["preset"], "threshold": record["threshold"],
        "seed": record["seed"], "config_key": record["config_key"], "precision": record["precision"],
        "extraction": record["hparams"].get("extraction") if record["family"] == "vit" else None,
        "error": record["error"], "last_error": (record["last_error"] or {}).get("message"),
        "baseline_flag": baseline.get("flag"), "baseline_message": baseline.get("message"),
        "task": None, "sparsity": None,
    }
    for part, names in RECORD_FIGURES.items():
        row.update({name: (record[part] or {}).get(name) for name in names})
    row["class_retention"] = (record["modularization"] or {}).get("retention")  # a class module's share of units
    row["cost_ratio"] = (record["cost"] or {}).get("ratio")
    return {**row, **patch_means(record), **config_values(record)}


def patch_means(record: Mapping[str, Any]) -> dict[str, float]:
    """A record's patched accuracy and F1 per strategy, averaged over its patched classes (``--compare``)."""
    entries = (record.get("patching") or {}).get("entries", [])
    means = {}
    for strategy in PATCH_STRATEGIES:
        chosen = [e for e in entries if e["strategy"] == strategy]
        for figure in ("acc", "f1"):
            if chosen:
                means[f"patch_{figure}_{strategy}"] = sum(e[figure] for e in chosen) / len(chosen)
    return means


def task_rows(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (record, task); a record without tasks (a failed cell) gives one row without task figures.

    Records of any readable schema are accepted (checked and upgraded through ``bench.record``).
    """
    rows = []
    for obj in records:
        record = as_record(dict(obj), f"record {obj.get('run_id', '?')}")
        base = record_row(record)
        for task in record["tasks"] or [None]:
            row = dict(base)
            if task is not None:
                row["task"] = ",".join(str(c) for c in task["classes"])
                row.update({name: task.get(name) for name in TASK_FIGURES})
                row["sparsity"] = task.get("sparsity")
                row["acc_delta"] = (task["module_acc"] - task["standard_acc"]) * 100
                row.update(control_figures(task))
            rows.append(row)
    return pd.DataFrame(rows)


def control_figures(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task's controls as columns: ``<kind>_<figure>`` for each control figure, and ``lead_<kind>``, the
    module's accuracy lead over the control in points (none where the control is the module itself)."""
    figures: dict[str, Any] = {}
    for kind, control in (task.get("controls") or {}).items():
        figures.update({f"{kind}_{name}": control.get(name) for name in CONTROL_FIGURES})
        same = control.get("same_as_module", False)
        figures[f"lead_{kind}"] = None if same else (task["module_acc"] - control["module_acc"]) * 100
    return figures


def with_controls(rows: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """``rows`` plus, for each name spelled ``method:kind`` (``mwt:random``), the method's task rows as that
    control's: its module figures replaced by the control's, the figures a control does not have (model,
    modularity, cost, retention, latency) left empty. UsageError when no row of the method has the control."""
    extra = []
    for name in names:
        if ":" not in name:
            continue
        method, kind = name.split(":", 1)
        if kind not in CONTROL_KINDS:
            raise UsageError(f"--compare {name}: unknown control '{kind}' (controls: {', '.join(CONTROL_KINDS)})")
        column = f"{kind}_module_acc"
        side = rows[(rows["method"] == method) & rows[column].notna()].copy() if column in rows else rows.iloc[:0]
        if side.empty:
            raise UsageError(f"--compare {name}: no records of {method} with a {kind} control "
                             f"(bench run --controls {kind})")
        side["method"] = name
        side[[*CONTROL_FIGURES]] = side[[f"{kind}_{figure}" for figure in CONTROL_FIGURES]].to_numpy()
        side[[*NOT_CONTROL_FIGURES]] = float("nan")
        extra.append(side)
    return pd.concat([rows, *extra], ignore_index=True) if extra else rows


def swept_keys(rows: pd.DataFrame) -> list[str]:
    """The ``cfg:`` columns that differ between configurations of one (data set, model, method)."""
    columns = [c for c in rows.columns if c.startswith(CONFIG)]
    if rows.empty or not columns:
        return []
    configs = rows.drop_duplicates("config_key")
    varying = configs.groupby(IDENTITY, sort=False)[columns].nunique(dropna=False).max()
    present = configs[columns].notna().any()
    return [c for c in columns if varying[c] > 1 and present[c]]
