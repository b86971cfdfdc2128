"""From records to the comparison table: records -> pandas -> terminal, md, csv, json, html, latex.

``bench report`` reads nothing but the ``record.json`` files under a runs directory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from bench.pipeline.store import read_json

KEYS = ["dataset", "model", "method", "threshold"]
COLUMNS = {  # column -> (header, kind) ; kinds: pct (share shown as %), num, ratio, int
    "test_acc": ("model acc", "pct"),
    "retention": ("retention", "pct"),
    "cohesion": ("cohesion", "num"),
    "coupling": ("coupling", "num"),
    "module_acc": ("module acc", "pct"),
    "standard_acc": ("std acc", "pct"),
    "acc_delta": ("Δ pts", "pts"),
    "module_acc_before_finetune": ("acc before FT", "pct"),
    "weight_retention": ("weights", "pct"),
    "flops_ratio": ("FLOPs", "pct"),
    "latency_ratio": ("latency", "ratio"),
    "train_seconds": ("train s", "int"),
    "seeds": ("seeds", "int"),
}
FOOTNOTE = ("Means over tasks and seeds. module acc: reused module on its task; std acc: standard model, "
            "logits restricted to the task; weights, FLOPs, latency: reused module / standard model; "
            "retention: units kept (union over the task's classes); standard: every class's module is the "
            "whole model, so its retention is 100% and its coupling 1 by definition. A FLOP is one multiply-add.")


def load_records(runs: Path) -> list[dict[str, Any]]:
    """Every record under ``runs`` (sorted by path), skipping unreadable files."""
    records = []
    for path in sorted(runs.rglob("record.json")):
        record = read_json(path)
        if record is not None and record.get("schema") == 1:
            records.append(record)
    return records


def task_rows(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per (record, task): the record's identity, model and modularization metrics, task metrics."""
    rows = []
    for rec in records:
        base = {
            "dataset": _label(rec["dataset"], rec.get("dataset_args")),
            "model": _label(rec["model"], rec.get("model_args")),
            "method": rec["method"], "threshold": rec["threshold"], "seed": rec["seed"],
            "error": rec.get("error"),
            **{k: v for k, v in (rec.get("model_metrics") or {}).items()},
            **{k: v for k, v in (rec.get("modularization") or {}).items() if k in ("cohesion", "coupling")},
        }
        base["model_retention"] = (rec.get("modularization") or {}).get("retention")
        for task in rec.get("tasks") or [{}]:
            row = {**base, **task}
            row["task"] = ",".join(str(c) for c in task.get("classes", []))
            rows.append(row)
    return pd.DataFrame(rows)


def _label(name: str, args: dict[str, Any] | None) -> str:
    if not args:
        return name
    return f"{name}:" + ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(args.items()))


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over tasks and seeds per (dataset, model, method, threshold); failed cells show their error."""
    if rows.empty:
        return rows
    rows = rows.copy()
    if "module_acc" in rows and "standard_acc" in rows:
        rows["acc_delta"] = (rows["module_acc"] - rows["standard_acc"]) * 100
    numeric = [c for c in COLUMNS if c in rows and c != "seeds"]
    grouped = rows.groupby(KEYS, sort=False, dropna=False)
    table = grouped[numeric].mean(numeric_only=True)
    table["seeds"] = grouped["seed"].nunique()
    errors = grouped["error"].agg(lambda s: next((e for e in s if isinstance(e, str)), None))
    table["error"] = errors
    return table.reset_index()


def _format(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "pts":
        return f"{value:+.2f}"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "int":
        return f"{value:.0f}"
    return f"{value:.3f}"


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with formatted cells and readable headers (what md/html/latex/terminal show)."""
    shown = summary[[c for c in KEYS if c in summary]].copy()
    for column, (header, kind) in COLUMNS.items():
        if column in summary:
            shown[header] = [_format(v, kind) for v in summary[column]]
    if "error" in summary and summary["error"].notna().any():
        shown["error"] = summary["error"].fillna("")
    return shown


TERMINAL_HIDDEN = ("acc before FT", "train s", "seeds")


def rich_table(summary: pd.DataFrame, title: str = "modbench") -> Table:
    """The comparison as a rich table for the terminal.

    Identity columns that hold one value only (say, a single data set) move into the title, and a
    few secondary columns are left to the other formats, so the table fits a laptop terminal.
    """
    shown = display_frame(summary).drop(columns=list(TERMINAL_HIDDEN), errors="ignore")
    constant = [k for k in ("dataset", "threshold") if k in shown and shown[k].nunique() == 1]
    if constant:
        title += " (" + ", ".join(f"{k} {shown[k].iloc[0]}" for k in constant) + ")"
        shown = shown.drop(columns=constant)
    table = Table(title=title, caption=FOOTNOTE, caption_justify="left")
    for column in shown.columns:
        key = column in KEYS or column == "error"
        table.add_column(str(column), justify="left" if key else "right", no_wrap=column in KEYS)
    for _, row in shown.iterrows():
        table.add_row(*(Text(str(v)) for v in row))
    return table


def render(summary: pd.DataFrame, fmt: str) -> str:
    """The comparison as text in ``fmt``: md, csv, json, html or latex (csv/json keep raw numbers)."""
    if fmt == "csv":
        return summary.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(summary.to_json(orient="records")), indent=2) + "\n"
    shown = display_frame(summary)
    if fmt == "md":
        return shown.to_markdown(index=False) + f"\n\n{FOOTNOTE}\n"
    if fmt == "html":
        return shown.to_html(index=False, border=0) + f"\n<p>{FOOTNOTE}</p>\n"
    if fmt == "latex":
        return shown.to_latex(index=False).replace("%", r"\%").replace("Δ", r"$\Delta$")
    raise ValueError(f"unknown format {fmt!r}")
