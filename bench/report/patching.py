"""The patching scenario's table: weak and patched accuracy, the patched class's F1, precision and recall.

One row per configuration and strategy; each figure is averaged over the patched classes of a seed,
then over seeds (mean ± standard deviation, as the main table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from bench.record import Record, as_record
from bench.report.display import KEYS, config_columns, format_value
from bench.report.rows import record_row, swept_keys
from bench.report.summary import GROUP, seed_stats

STRATEGIES = {"replace": "replace (CNNSplitter)", "calibrate": "calibrate (MODA)"}
COLUMNS = {  # figure -> (header, kind), as bench.report.display.COLUMNS
    "weak_acc": ("weak acc", "pct"),
    "acc": ("patched acc", "pct"),
    "acc_gain": ("Δ acc pts", "pts"),
    "weak_f1": ("weak F1", "pct"),
    "f1": ("F1", "pct"),
    "f1_gain": ("Δ F1 pts", "pts"),
    "precision": ("precision", "pct"),
    "recall": ("recall", "pct"),
}
NOTE = ("Patching (--scenario patch): a weak model (the cell's architecture trained briefly on a tenth of the training "
        "images) patched class by class with the method's module of that class, used as composed. replace: "
        "CNNSplitter's rule (the weak model's softmax, the class's column replaced by the module's logit min-max "
        "normalised by its range on validation images of the class); calibrate: MODA's linear layer over the joint "
        "outputs, trained on the weak model's images. Accuracies over all test images; F1, precision and recall of "
        "the patched class against the rest (weak F1: the weak model's), each averaged over the patched classes.")


def patch_rows(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (record, patched class, strategy) of the records that patched a weak model."""
    rows = []
    for obj in records:
        record: Record = as_record(dict(obj), f"record {obj.get('run_id', '?')}")
        if record["error"] is not None or not record.get("patching"):
            continue
        base = record_row(record)
        for entry in record["patching"]["entries"]:
            rows.append({**base, **entry, "acc_gain": (entry["acc"] - entry["weak_acc"]) * 100,
                         "f1_gain": (entry["f1"] - entry["weak_f1"]) * 100})
    return pd.DataFrame(rows)


def patch_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and strategy: ``<figure>_mean``, ``<figure>_std``, classes and seeds (``n``)."""
    if rows.empty:
        return rows
    group = [*GROUP, "strategy"]
    grouped = rows.groupby(group, sort=False, dropna=False)
    table = grouped[swept_keys(rows)].first().join(seed_stats(rows, list(COLUMNS), group))
    table["classes"] = grouped["label"].nunique()
    table["n"] = grouped["seed"].nunique()
    table = table.reset_index()
    table["order"] = table["strategy"].map(list(STRATEGIES).index)
    order = ["dataset", "model", "method", "preset", "threshold", "order"]
    return table.sort_values(order, kind="stable", ignore_index=True).drop(columns="order")


def patch_display(summary: pd.DataFrame) -> pd.DataFrame:
    """The patching summary with formatted cells and readable headers."""
    shown = summary[[k for k in KEYS if k in summary]].fillna("–").copy()
    for column in config_columns(summary):
        shown[column.split(":", 1)[1]] = summary[column].astype(str)
    shown["threshold"] = summary["threshold"].map(lambda t: f"{t:g}")
    shown["strategy"] = summary["strategy"].map(lambda s: STRATEGIES.get(s, s))
    for figure, (header, kind) in COLUMNS.items():
        shown[header] = [format_value(m, s, kind) for m, s in zip(summary[f"{figure}_mean"],
                                                                  summary[f"{figure}_std"], strict=True)]
    shown["classes"] = summary["classes"]
    shown["n"] = summary["n"]
    return shown


def patch_raw(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with raw numbers, as csv and json carry it."""
    return summary.rename(columns=lambda c: c.split(":", 1)[1] if c.startswith("cfg:") else c)
