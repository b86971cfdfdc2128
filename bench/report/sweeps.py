"""Sweep figures: a swept setting against retention, cohesion, coupling and module accuracy, as the papers plot them.

A setting is swept when it differs between configurations of one data set, model and method
(``bench.report.rows.swept_keys``): ``--set nemo.alpha=...`` over several runs, ``epochs``, a model's
``width``. Each figure has one line per method and model (and per value of any other swept
setting); points are means over seeds and tasks, with the standard deviation over seeds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.report.figure import Style, pyplot, save, spread
from bench.report.rows import CONFIG, swept_keys

PANELS = {"retention": ("units kept, %", 100), "cohesion": ("cohesion (higher is better)", 1),
          "coupling": ("coupling (lower is better)", 1), "module_acc": ("module accuracy on its task, %", 100)}


def _x_values(values: pd.Series) -> tuple[pd.Series, list[str] | None]:
    """Numeric positions of a setting's values, and tick labels when the values are not numbers."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers, None
    labels = sorted({str(v) for v in values})
    return values.map(lambda v: labels.index(str(v))), labels


def _line_keys(summary: pd.DataFrame, key: str, others: list[str]) -> list[str]:
    """What tells the lines of a sweep of ``key`` apart."""
    model = "model_name" if key.startswith(f"{CONFIG}model.") else "model"
    keys = ["method", model, *[o for o in others if summary[o].nunique() > 1]]
    if summary["dataset"].nunique() > 1:
        keys.insert(0, "dataset_name" if key.startswith(f"{CONFIG}dataset.") else "dataset")
    if summary["threshold"].nunique() > 1:
        keys.append("threshold")
    return keys


def sweep_figure(summary: pd.DataFrame, key: str, others: list[str], style: Style, path: Path) -> Path:
    """The figure of one swept setting ``key`` over the summary rows that have it."""
    x, ticks = _x_values(summary[key])
    summary = summary.assign(x=x)
    lines = _line_keys(summary, key, others)
    fig, axes = pyplot().subplots(1, len(PANELS), figsize=(4 * len(PANELS), 4))
    for values, group in summary.groupby(lines, sort=True, dropna=False):
        group = group.sort_values("x")
        named = dict(zip(lines, values, strict=True))
        label = " / ".join(f"{k.removeprefix(CONFIG)}={v}" if k.startswith(CONFIG) else str(v)
                           for k, v in named.items())
        model = named.get("model", named.get("model_name"))
        for ax, (figure, (_, scale)) in zip(axes, PANELS.items(), strict=True):
            ax.errorbar(group["x"], group[f"{figure}_mean"] * scale, yerr=spread(group[f"{figure}_std"] * scale),
                        capsize=2, label=label, **style.of(named["method"], model))
    for ax, (ylabel, _) in zip(axes, PANELS.values(), strict=True):
        ax.set_xlabel(key.removeprefix(CONFIG))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ticks is not None:
            ax.set_xticks(range(len(ticks)), ticks)
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"Sweep of {key.removeprefix(CONFIG)}")
    return save(fig, path)


def _varies(summary: pd.DataFrame, key: str) -> bool:
    return bool((summary.groupby(["dataset_name", "model_name", "method"])[key].nunique() > 1).any())


def sweep_figures(rows: pd.DataFrame, summary: pd.DataFrame, style: Style, directory: Path) -> list[Path]:
    """One ``sweep_<setting>.png`` per swept setting, in ``directory``."""
    keys = swept_keys(rows)
    paths = []
    for key in keys:
        having = summary[summary[key].notna()]
        if having.empty or not _varies(having, key) or not all(f"{p}_mean" in having for p in PANELS):
            continue
        name = re.sub(r"[^A-Za-z0-9_.=-]", "_", key.removeprefix(CONFIG))
        paths.append(sweep_figure(having, key, [k for k in keys if k != key], style, directory / f"sweep_{name}.png"))
    return paths
