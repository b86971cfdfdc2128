"""Comparison plots (PNG) for ``bench report --plots DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Lay out, write and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def size_accuracy(rows: pd.DataFrame, path: Path) -> Path:
    """Module accuracy against module size (weight retention), one marker per method, per task and seed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (method, model), group in rows.groupby(["method", "model"], sort=False):
        ax.scatter(group["weight_retention"] * 100, group["module_acc"] * 100, label=f"{method} / {model}",
                   alpha=0.8)
    ax.set_xlabel("module weights, % of the standard model")
    ax.set_ylabel("module accuracy on its task, %")
    ax.set_title("Reused modules: size against accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, path)


def method_bars(rows: pd.DataFrame, path: Path) -> Path:
    """Per method and model: retention, weights and FLOPs of the modules, and the accuracy change."""
    plt = _pyplot()
    rows = rows.assign(label=rows["method"] + "\n" + rows["model"],
                       delta=(rows["module_acc"] - rows["standard_acc"]) * 100)
    groups = rows.groupby("label", sort=False)
    means = groups[["retention", "weight_retention", "flops_ratio"]].mean() * 100
    delta = groups["delta"].mean()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    means.plot.bar(ax=left, rot=25)
    left.set_ylabel("% of the standard model")
    left.set_title("Module size")
    left.legend(["units kept", "weights", "FLOPs"], fontsize=8)
    delta.plot.bar(ax=right, rot=25, color="tab:gray")
    right.axhline(0, color="black", linewidth=0.8)
    right.set_ylabel("module acc − standard acc, points")
    right.set_title("Accuracy change on the task")
    for ax in (left, right):
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelsize=7)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    return _save(plt, fig, path)


def threshold_sweep(rows: pd.DataFrame, path: Path) -> Path:
    """Retention and module accuracy against the module threshold, per method and model."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for (method, model), group in rows.groupby(["method", "model"], sort=False):
        curve = group.groupby("threshold")[["retention", "module_acc"]].mean() * 100
        left.plot(curve.index, curve["retention"], marker="o", label=f"{method} / {model}")
        right.plot(curve.index, curve["module_acc"], marker="o", label=f"{method} / {model}")
    left.set_ylabel("units kept, %")
    right.set_ylabel("module accuracy, %")
    for ax in (left, right):
        ax.set_xlabel("module threshold")
        ax.grid(alpha=0.3)
    right.legend(fontsize=7)
    return _save(plt, fig, path)


def draw_plots(rows: pd.DataFrame, directory: Path) -> list[Path]:
    """Every plot the records allow, as PNG files in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    done = rows[rows["error"].isna()] if "error" in rows else rows
    done = done.dropna(subset=["module_acc"]) if "module_acc" in done else done.iloc[0:0]
    if done.empty:
        return []
    modular = done[done["method"] != "standard"]
    paths = [size_accuracy(done, directory / "size_accuracy.png")]
    if not modular.empty:
        paths.append(method_bars(modular, directory / "methods.png"))
    if done["threshold"].nunique() > 1:
        paths.append(threshold_sweep(done, directory / "threshold_sweep.png"))
    return paths
