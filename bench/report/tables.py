"""From records to the comparison table: terminal, md, csv, json, html, latex.

``bench report`` reads nothing but the ``record.json`` files under a runs directory
(``bench.report.load``); ``task_rows`` and ``summarize`` turn records into one row per
configuration, and this module renders it. ``bench run`` prints ``rich_table(summarize(task_rows(records)))``.
"""

from __future__ import annotations

import json

import pandas as pd
from rich.table import Table
from rich.text import Text

from bench.report.display import COLUMNS, FOOTNOTE, KEYS, display_frame, footnote
from bench.report.rows import CONFIG, task_rows
from bench.report.summary import summarize

__all__ = ["FOOTNOTE", "raw_frame", "render", "rich_table", "summarize", "task_rows"]

TERMINAL_HIDDEN = ("class retention", "acc before FT", "train s", "Linear weights", "merged weights", "merged FLOPs",
                   "latency b1", "dense FLOPs", "random acc", "random before FT", "vs magnitude", "magnitude acc",
                   "magnitude before FT")
FIGURE_HEADERS = {header for header, _ in COLUMNS.values()}
WHOLE = ("sparsity",)  # columns whose words a narrow terminal folds onto more lines rather than cut short
RAW_DROPPED = ("dataset_name", "model_name")
LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
         "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$",
         "–": "--"}


def rich_table(summary: pd.DataFrame, title: str = "modbench") -> Table:
    """The comparison as a rich table for the terminal, its footnote computed from ``summary``.

    Identity columns that hold one value only (say, a single data set) move into the title, and a
    few secondary columns are left to the other formats, so the table fits a laptop terminal.
    """
    shown = display_frame(summary).drop(columns=list(TERMINAL_HIDDEN), errors="ignore")
    if (shown["n"] <= 1).all():
        shown = shown.drop(columns="n")
    return frame_table(shown, title, footnote(summary), {*FIGURE_HEADERS, "n"}, ("dataset", "preset", "threshold"))


def frame_table(shown: pd.DataFrame, title: str, note: str, right: set[str], collapse: tuple[str, ...]) -> Table:
    """A frame of formatted cells as a rich table with ``note`` below.

    ``right`` names the right-aligned columns; the ``collapse`` columns that hold one value only move into the title.
    """
    constant = [k for k in collapse if k in shown and shown[k].nunique() == 1]
    if constant:
        title += " (" + ", ".join(f"{k} {shown[k].iloc[0]}" for k in constant) + ")"
        shown = shown.drop(columns=constant)
    table = Table(title=title, caption=note, caption_justify="left")
    for column in shown.columns:
        table.add_column(str(column), justify="right" if column in right else "left", no_wrap=column in KEYS,
                         overflow="fold" if column in WHOLE else "ellipsis")
    for _, row in shown.iterrows():
        table.add_row(*(Text(str(v)) for v in row))
    return table


def raw_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with raw numbers, as csv and json carry it (configuration columns by their key).

    A swept setting that is also a column of its own (``precision``) appears once.
    """
    shadowed = [c.removeprefix(CONFIG) for c in summary if c.startswith(CONFIG) and c.removeprefix(CONFIG) in summary]
    raw = summary.drop(columns=[c for c in (*RAW_DROPPED, *shadowed) if c in summary])
    return raw.rename(columns=lambda c: c.removeprefix(CONFIG))


def _latex(text: object) -> str:
    return "".join(LATEX.get(ch, ch) for ch in str(text))


def render(summary: pd.DataFrame, fmt: str) -> str:
    """The comparison as text in ``fmt``: md, csv, json, html or latex (csv/json keep raw numbers)."""
    return render_frames(raw_frame(summary), display_frame(summary), footnote(summary), fmt)


def render_frames(raw: pd.DataFrame, shown: pd.DataFrame, note: str, fmt: str) -> str:
    """``raw`` as csv or json, or the formatted ``shown`` with ``note`` below as md, html or latex."""
    if fmt == "csv":
        return raw.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(raw.to_json(orient="records")), indent=2) + "\n"
    if fmt == "md":
        return shown.to_markdown(index=False, disable_numparse=True) + f"\n\n{note}\n"
    if fmt == "html":
        from bench.report.page import html_page

        return html_page(shown, note)
    if fmt == "latex":
        escaped = shown.map(_latex).rename(columns=_latex)
        return escaped.to_latex(index=False) + f"\n{_latex(note)}\n"
    raise ValueError(f"unknown format {fmt!r}")
