"""Task rows -> one row per configuration: mean and standard deviation over seeds of every figure.

A row is one (data set, model, method, preset, threshold, configuration): rows never merge cells
that differ in anything but their seed. Each figure is first averaged over the tasks of a seed,
then summarised over seeds as ``<figure>_mean``, ``<figure>_std`` (sample standard deviation, empty
for one seed) and ``n``, the number of seeds with figures.
"""

from __future__ import annotations

import pandas as pd

from bench.record import CONTROL_KINDS
from bench.report.rows import swept_keys

GROUP = ["dataset", "model", "method", "preset", "threshold", "config_key"]
FIGURES = ["test_acc", "retention", "class_retention", "cohesion", "coupling", "module_acc", "standard_acc",
           "acc_delta", "module_acc_before_finetune", "retention_sum", "weight_retention", "flops_ratio",
           "latency_ratio", "latency_ratio_b1", "weight_retention_merged", "flops_ratio_merged", "flops_ratio_dense",
           "train_seconds", "cost_ratio",
           *(f"lead_{kind}" for kind in CONTROL_KINDS),
           *(f"{kind}_{figure}" for kind in CONTROL_KINDS for figure in ("module_acc", "module_acc_before_finetune"))]
CARRIED = ["family", "extraction", "precision", "dataset_name", "model_name", "sparsity"]


def _first(values: pd.Series) -> object:
    """The first value that is not missing (None when all are)."""
    present = values.dropna()
    return present.iloc[0] if len(present) else None


def _flags(values: pd.Series) -> str | None:
    flags = sorted(set(values.dropna()))
    return ",".join(flags) if flags else None


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration with ``<figure>_mean``, ``<figure>_std``, ``n``, the swept ``cfg:`` values,
    the baseline flags (``baseline_flag``, ``baseline_flagged`` seeds, a ``baseline_message``) and errors."""
    if rows.empty:
        return rows
    done = rows[rows["error"].isna()]
    stats = seed_stats(done)
    groups = rows.groupby(GROUP, sort=False, dropna=False)
    flagged = rows.dropna(subset=["baseline_flag"]).groupby(GROUP, sort=False, dropna=False)["seed"].nunique()
    swept = swept_keys(rows)
    carried = [*CARRIED, *swept]
    table = groups[carried].agg(_first)
    table = table.join(stats) if not stats.empty else table
    table["n"] = done.groupby(GROUP, sort=False, dropna=False)["seed"].nunique()
    table["seeds"] = groups["seed"].nunique()
    table["baseline_flag"] = groups["baseline_flag"].agg(_flags)
    table["baseline_flagged"] = flagged
    table["baseline_message"] = groups["baseline_message"].agg(_first)
    table["last_error"] = groups["last_error"].agg(_first)
    table["error"] = groups["error"].agg(_first)
    table[["n", "baseline_flagged"]] = table[["n", "baseline_flagged"]].fillna(0).astype(int)
    order = ["dataset", "model", "method", "preset", *swept, "threshold"]
    return table.reset_index().sort_values(order, key=_sortable, kind="stable", ignore_index=True)


def seed_stats(done: pd.DataFrame, figures: list[str] = FIGURES, group: list[str] = GROUP) -> pd.DataFrame:
    """``<figure>_mean`` and ``<figure>_std`` per ``group``: the rows of a seed (its tasks) averaged first, then
    the seeds."""
    figures = [f for f in figures if f in done and done[f].notna().any()]
    if not figures:
        return pd.DataFrame()
    per_seed = done.groupby([*group, "seed"], sort=False, dropna=False)[figures].mean()
    stats = per_seed.groupby(level=group, sort=False, dropna=False).agg(["mean", "std"])
    stats.columns = [f"{figure}_{stat}" for figure, stat in stats.columns]
    return stats


def _sortable(column: pd.Series) -> pd.Series:
    """Numbers sort as numbers, anything else as text (a column may mix values and gaps)."""
    return column if pd.api.types.is_numeric_dtype(column) else column.astype(str)
