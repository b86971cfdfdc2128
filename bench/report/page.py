"""``bench report --format html``: one self-contained page of the comparison.

The table is the report's formatted frame, every column of it (so a column the report gains shows
here unchanged), sortable by any column and filtered by data set, model and method; each row
opens the records behind it (the settings they ran with, per-task figures, baseline flag, preset:
what ``bench show`` prints); the plots are inline PNGs. CSS and script are inline too: the page
loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import re
from collections import defaultdict
from collections.abc import Sequence
from importlib import metadata, resources
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from bench.record import Record
from bench.report.rows import label
from bench.report.show import record_sections, task_table
from bench.report.summary import GROUP

FILTERS = ("dataset", "model", "method")
NUMBER = re.compile(r"^([+-]?\d|–$)")  # a figure ("98.1 ± 0.4%", "+0.46", "1.10x") or a gap: right-aligned, unbroken
ASSETS = resources.files("bench.report") / "assets"


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _version() -> str:
    try:
        return metadata.version("modbench")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def group_key(record: Record) -> tuple:
    """The summary row a record belongs to: its values of ``bench.report.summary.GROUP``."""
    values = {"dataset": label(record["dataset"], record["dataset_args"]),
              "model": label(record["model"], record["model_args"]), "method": record["method"],
              "preset": record["preset"], "threshold": record["threshold"], "config_key": record["config_key"]}
    return tuple(values[key] for key in GROUP)


def records_of_rows(summary: pd.DataFrame, records: Sequence[Record]) -> list[list[Record]]:
    """The records behind each summary row (one per seed), by seed."""
    keyed: dict[tuple, list[Record]] = defaultdict(list)
    for record in records:
        keyed[group_key(record)].append(record)
    return [sorted(keyed.get(tuple(row), []), key=lambda r: r["seed"])
            for row in summary[GROUP].itertuples(index=False, name=None)]


def _record_view(record: Record) -> dict[str, Any]:
    return {"title": f"seed {record['seed']} · {record['run_id']}", "sections": record_sections(record),
            "tasks": task_table(record["tasks"])}


def _breakable(text: str) -> Markup:
    """``text`` escaped, a line may break after a comma or colon followed by no space (``vit_s:depth=2,width=0.25``)."""
    return Markup(re.sub(r"([,:])(?=\S)", r"\1<wbr>", str(escape(text))))


def _row(cells: pd.Series, records: Sequence[Record]) -> dict[str, Any]:
    texts = [str(v) for v in cells]
    return {"cells": [(_breakable(text), bool(NUMBER.match(text))) for text in texts],
            "filters": {c: str(cells[c]) for c in FILTERS if c in cells}, "records": [_record_view(r) for r in records]}


def html_page(shown: pd.DataFrame, note: str, title: str = "modbench",
              records: Sequence[Sequence[Record]] | None = None, images: Sequence[tuple[str, bytes]] = (),
              sections: Sequence[tuple[str, Markup]] = ()) -> str:
    """The page: ``shown`` (formatted cells) with ``note`` below, each row opening ``records[i]``, then further
    ``sections`` (a heading and a ready HTML table each: the reuse scenarios'), then ``images``."""
    records = records if records is not None else [[] for _ in range(len(shown))]
    rows = [_row(cells, found) for (_, cells), found in zip(shown.iterrows(), records, strict=True)]
    filters = [{"column": c, "name": c.replace("_", " "), "choices": sorted({str(v) for v in shown[c]})}
               for c in FILTERS if c in shown]
    count = sum(len(found) for found in records)
    subtitle = f"{len(rows)} rows" + (f" from {count} records" if count else "") + f" · modbench {_version()}"
    hint = "Click a column to sort" + ("; click a row for its records." if count else ".")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(_asset("page.html"))
    return template.render(
        title=title, subtitle=subtitle, hint=hint, version=_version(), columns=[str(c) for c in shown.columns],
        rows=rows, filters=filters, note=note, css=Markup(_asset("page.css")),
        js=Markup(_asset("page.js")),
        images=[(name, base64.b64encode(data).decode("ascii")) for name, data in images], sections=sections)
