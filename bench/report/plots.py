"""Comparison plots (PNG) for ``bench report --plots DIR``.

Every figure draws a method in the same colour and a model with the same marker; points are
means over seeds with standard-deviation error bars where there are several seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.display import config_columns
from bench.report.figure import Style, pyplot, save, spread
from bench.report.rows import CONFIG
from bench.report.summary import summarize
from bench.report.sweeps import sweep_figures


def size_accuracy(rows: pd.DataFrame, style: Style, path: Path) -> Path:
    """Module accuracy against module size, one point per method, model and task, and each method's Pareto front."""
    keys = ["method", "model", "config_key", "threshold", "task"]
    points = rows.groupby(keys, sort=False)[["weight_retention", "module_acc"]].agg(["mean", "std"]) * 100
    fig, ax = pyplot().subplots(figsize=(7, 5))
    for (method, model), group in points.groupby(level=["method", "model"], sort=False):
        ax.errorbar(group[("weight_retention", "mean")], group[("module_acc", "mean")],
                    xerr=spread(group[("weight_retention", "std")]), yerr=spread(group[("module_acc", "std")]),
                    linestyle="none", alpha=0.85, label=f"{method} / {model}", **style.of(method, model))
    for method, group in points.groupby(level="method", sort=False):
        front = pareto_front(group[("weight_retention", "mean")].to_numpy(), group[("module_acc", "mean")].to_numpy())
        if len(front) > 1:
            ax.plot(*zip(*front, strict=True), color=style.colours[method], linestyle="--", linewidth=1,
                    label=f"{method}: Pareto front")
    ax.set_xlabel("module weights, % of the standard model's")
    ax.set_ylabel("module accuracy on its task, %")
    ax.set_title("Reused modules: size against accuracy (one point per task)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)


def pareto_front(sizes: Any, accuracies: Any) -> list[tuple[float, float]]:
    """The points no other point beats on both size (smaller) and accuracy (higher), by increasing size."""
    front: list[tuple[float, float]] = []
    for size, acc in sorted(zip(sizes, accuracies, strict=True), key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((float(size), float(acc)))
    return front


def _label(row: pd.Series, settings: list[str], sep: str) -> str:
    """Method, model and swept settings of a summary row, joined by ``sep``."""
    parts = [row["method"], row["model"], *(f"{k.removeprefix(CONFIG)}={row[k]}" for k in settings if pd.notna(row[k]))]
    return sep.join(parts)


def method_bars(summary: pd.DataFrame, style: Style, path: Path) -> Path:
    """Per configuration of a method: retention, weights and FLOPs of its modules, and the accuracy change."""
    settings = config_columns(summary)
    labels = [_label(row, settings, "\n") for _, row in summary.iterrows()]
    size_columns = {"retention": "units kept", "weight_retention": "weights", "flops_ratio": "FLOPs"}
    means = pd.DataFrame({name: summary[f"{c}_mean"].to_numpy() * 100 for c, name in size_columns.items()},
                         index=labels)
    errors = pd.DataFrame({name: summary[f"{c}_std"].to_numpy() * 100 for c, name in size_columns.items()},
                          index=labels)
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.5))
    means.plot.bar(ax=left, rot=25, yerr=None if errors.isna().all(axis=None) else errors.fillna(0), capsize=2)
    left.set_ylabel("% of the standard model")
    left.set_title("Module size")
    left.legend(fontsize=8)
    right.bar(range(len(summary)), summary["acc_delta_mean"], yerr=spread(summary["acc_delta_std"]), capsize=2,
              color=[style.colours[m] for m in summary["method"]])
    right.set_xticks(range(len(summary)), labels, rotation=25)
    right.axhline(0, color="black", linewidth=0.8)
    right.set_ylabel("module acc − standard acc, points")
    right.set_title("Accuracy change on the task")
    for ax in (left, right):
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelsize=7)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    return save(fig, path)


def threshold_sweep(summary: pd.DataFrame, style: Style, path: Path) -> Path:
    """Retention and module accuracy against the module threshold, one line per method, model and configuration."""
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.5))
    settings = config_columns(summary)
    for (method, model, _), group in summary.groupby(["method", "model", "config_key"], sort=False):
        if group["threshold"].nunique() < 2:
            continue
        group = group.sort_values("threshold")
        label = _label(group.iloc[0], settings, " / ")
        for ax, figure in ((left, "retention"), (right, "module_acc")):
            ax.errorbar(group["threshold"], group[f"{figure}_mean"] * 100, yerr=spread(group[f"{figure}_std"] * 100),
                        capsize=2, label=label, **style.of(method, model))
    left.set_ylabel("units kept, % of the maskable units")
    right.set_ylabel("module accuracy on its task, %")
    for ax in (left, right):
        ax.set_xlabel("module threshold (share of a class's samples that activate a unit)")
        ax.grid(alpha=0.3)
    right.legend(fontsize=7)
    return save(fig, path)


def draw_plots(rows: pd.DataFrame, directory: Path) -> list[Path]:
    """Every plot the records allow, as PNG files in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    done = rows[rows["error"].isna() & rows["module_acc"].notna()] if "module_acc" in rows else rows.iloc[0:0]
    if done.empty:
        return []
    style = Style(list(done["method"]), [*done["model"], *done["model_name"]])
    summary = summarize(done)
    paths = [size_accuracy(done, style, directory / "size_accuracy.png")]
    modular = summary[summary["method"] != "standard"]
    if not modular.empty:
        paths.append(method_bars(modular.reset_index(drop=True), style, directory / "methods.png"))
    if (summary.groupby(["method", "model", "config_key"])["threshold"].nunique() > 1).any():
        paths.append(threshold_sweep(summary, style, directory / "threshold_sweep.png"))
    return paths + sweep_figures(done, summary, style, directory)
