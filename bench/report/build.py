"""``bench report``: records in, the table (or the comparison of two methods) and the plots out."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Group, RenderableType

from bench.errors import UsageError
from bench.record import Record
from bench.report.compare import compare_methods, display_comparison
from bench.report.controls import NOTE, control_leads, display_leads, leads_text
from bench.report.display import display_frame, footnote
from bench.report.output import writing
from bench.report.page import html_page, records_of_rows
from bench.report.tables import frame_table, render, render_frames, rich_table, summarize, task_rows

COLLAPSE = ("dataset", "model", "preset", "threshold")  # columns of one value move into a terminal table's title
LEAD_RIGHT = {"lead (pts)", "95% interval", "pairs"}


@dataclass
class Built:
    """What a report produced: text (or a rich table for the terminal) and the plot files written."""

    content: str | RenderableType
    plots: list[Path] = field(default_factory=list)


def parse_pair(text: str) -> tuple[str, str]:
    """'mwt,nemo' -> ('mwt', 'nemo'); a one-line error otherwise."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) != 2:
        raise UsageError(f"--compare takes two methods separated by a comma, e.g. --compare mwt,nemo or a method "
                         f"and its control, --compare mwt,mwt:random (got '{text}')")
    return names[0], names[1]


def summary_content(rows: pd.DataFrame, fmt: str, title: str = "modbench") -> str | RenderableType:
    """The comparison table in ``fmt`` (not html: ``html_page``), followed (but in csv and json, which hold one
    table: its ``lead_*`` columns) by each method's lead over its controls with 95% intervals, when the records
    hold controls."""
    summary = summarize(rows)
    leads = control_leads(rows)
    if fmt == "table":
        table = rich_table(summary, title)
        if leads.empty:
            return table
        return Group(table, frame_table(display_leads(leads), "lead over controls", NOTE, LEAD_RIGHT, COLLAPSE))
    text = render(summary, fmt)
    if leads.empty or fmt in ("csv", "json"):
        return text
    return text + "\n" + render_frames(leads, display_leads(leads), NOTE, fmt)


def build_report(records: list[Record], runs: Path, fmt: str, compare: str | None = None,
                 plots: Path | None = None) -> Built:
    """The report of ``records`` in ``fmt`` ('table' gives a rich table), plots drawn into ``plots``.

    The html page embeds the plots: those drawn into ``plots``, else drawn into a temporary folder.
    """
    if not records:
        raise UsageError(f"no records under {runs} (run `bench run` first, or pass --runs DIR)")
    pair = parse_pair(compare) if compare else None
    rows = task_rows(records)
    built = Built("")
    if plots is not None:
        from bench.report.plots import draw_plots

        with writing("--plots", plots):
            built.plots = draw_plots(rows, plots)
    if pair:
        frame = compare_methods(rows, *pair)
        shown, note = display_comparison(frame, *pair)
        right = {f"{pair[0]} − {pair[1]}", "95% interval", "pairs"}
        title = f"{pair[0]} vs {pair[1]}"
        if fmt == "html":
            built.content = html_page(shown, note, f"modbench: {title}", images=_images(rows, built.plots, plots))
        else:
            built.content = (frame_table(shown, title, note, right, COLLAPSE) if fmt == "table"
                             else render_frames(frame, shown, note, fmt))
    else:
        summary = summarize(rows)
        if fmt == "html":
            note = " ".join(filter(None, (footnote(summary), leads_text(control_leads(rows)))))
            built.content = html_page(display_frame(summary), note, "modbench results",
                                      records_of_rows(summary, records), _images(rows, built.plots, plots))
        else:
            built.content = summary_content(rows, fmt)
    return built


def _images(rows: pd.DataFrame, drawn: list[Path], plots: Path | None) -> list[tuple[str, bytes]]:
    """The plots as (file name, PNG bytes): those drawn into ``--plots``, else drawn now into a temporary folder."""
    if plots is not None:
        return [(path.name, path.read_bytes()) for path in drawn]
    from bench.report.plots import draw_plots

    with tempfile.TemporaryDirectory(prefix="modbench-plots-") as folder:
        return [(path.name, path.read_bytes()) for path in draw_plots(rows, Path(folder))]
