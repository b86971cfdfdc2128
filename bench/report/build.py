"""``bench report``: records in, the tables (or the comparison of two methods) and the plots out.

The report has up to three tables: the modules reused on their tasks (always), the patching
scenario (records that ran ``--scenario patch``) and the modules composed across models
(``composition.json`` files). The terminal, md, html and latex show every table there is; csv and
json hold one table, the one ``table`` names (default: the modules).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from markupsafe import Markup
from rich.console import Group, RenderableType
from rich.text import Text

from bench.errors import UsageError
from bench.record import Composition, Record
from bench.report import compositions as composed
from bench.report import controls, patching
from bench.report.compare import compare_methods, display_comparison
from bench.report.display import display_frame, footnote
from bench.report.output import writing
from bench.report.page import html_page, records_of_rows
from bench.report.tables import frame_table, raw_frame, render_frames, rich_table, summarize, task_rows

HEADINGS = {"modules": "modbench results", "controls": "lead over controls", "patch": "Patching a weak model",
            "composition": "Modules composed across models"}

COLLAPSE = ("dataset", "model", "preset", "threshold")  # columns of one value move into a terminal table's title
LEAD_RIGHT = {"lead (pts)", "95% interval", "pairs"}


@dataclass
class Built:
    """What a report produced: text (or a rich renderable for the terminal) and the plot files written."""

    content: str | RenderableType
    plots: list[Path] = field(default_factory=list)


@dataclass
class Section:
    """One table of the report: raw numbers (csv, json), formatted cells with their note, the terminal form, and
    the records behind each row (the html page opens them)."""

    name: str
    raw: pd.DataFrame
    shown: pd.DataFrame
    note: str
    terminal: Callable[[], RenderableType]
    row_records: list[list[Record]] | None = None

    def text(self, fmt: str) -> str:
        """The table in a text format."""
        return render_frames(self.raw, self.shown, self.note, fmt)


def parse_pair(text: str) -> tuple[str, str]:
    """'mwt,nemo' -> ('mwt', 'nemo'); a one-line error otherwise."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) != 2:
        raise UsageError(f"--compare takes two methods separated by a comma, e.g. --compare mwt,nemo or a method "
                         f"and its control, --compare mwt,mwt:random (got '{text}')")
    return names[0], names[1]


def build_report(records: list[Record], runs: Path, fmt: str, compare: str | None = None,
                 plots: Path | None = None, compositions: list[Composition] | None = None,
                 table: str | None = None) -> Built:
    """The report of ``records`` (and ``compositions``) in ``fmt`` ('table' gives a rich renderable), plots drawn
    into ``plots``; ``table`` picks one table (see the module's docstring).

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
        sections = _chosen(report_sections(records, rows, compositions or []), fmt, table)
        if fmt == "html":
            first, rest = sections[0], sections[1:]
            built.content = html_page(first.shown, first.note, HEADINGS[first.name], first.row_records,
                                      _images(rows, built.plots, plots),
                                      [(HEADINGS[s.name], Markup(s.text("html"))) for s in rest])
        else:
            built.content = _joined(sections, fmt)
    return built


def report_sections(records: list[Record], rows: pd.DataFrame, compositions: list[Composition]) -> list[Section]:
    """The tables ``records`` and ``compositions`` give, in the report's order."""
    summary = summarize(rows)
    sections = [Section("modules", raw_frame(summary), display_frame(summary), footnote(summary),
                        lambda: rich_table(summary), records_of_rows(summary, records))]
    leads = controls.control_leads(rows)
    if not leads.empty:
        sections.append(_section("controls", leads, controls.display_leads(leads), controls.NOTE, LEAD_RIGHT,
                                 COLLAPSE))
    patch_summary = patching.patch_summary(patching.patch_rows(records))
    if not patch_summary.empty:
        right = {header for header, _ in patching.COLUMNS.values()} | {"classes", "n"}
        sections.append(_section("patch", patching.patch_raw(patch_summary), patching.patch_display(patch_summary),
                                 patching.NOTE, right, ("dataset", "preset")))
    if compositions:
        frame = composed.composition_frame(compositions)
        sections.append(_section("composition", frame, composed.composition_display(frame), composed.NOTE,
                                 {header for header, _ in composed.COLUMNS.values()}, ("dataset",)))
    return sections


def _section(name: str, raw: pd.DataFrame, shown: pd.DataFrame, note: str, right: set[str],
             collapse: tuple[str, ...]) -> Section:
    """A scenario's table, under its heading in the terminal."""
    return Section(name, raw, shown, note, lambda: frame_table(shown, HEADINGS[name], note, right, collapse))


def _chosen(sections: list[Section], fmt: str, table: str | None) -> list[Section]:
    """The sections to print: ``table`` alone when given (csv and json: the modules by default), else all."""
    if table is None and fmt not in ("csv", "json"):
        return sections
    wanted = table or "modules"
    found = [s for s in sections if s.name == wanted]
    if not found:
        raise UsageError(f"--table {wanted}: these records have no such table (they have: "
                         f"{', '.join(s.name for s in sections)})")
    return found


def _joined(sections: list[Section], fmt: str) -> str | RenderableType:
    """The sections one after the other, each but the first under a heading in ``fmt``."""
    if fmt == "table":
        parts = [sections[0].terminal()]
        for section in sections[1:]:
            parts += [Text(""), section.terminal()]
        return parts[0] if len(parts) == 1 else Group(*parts)
    texts = [sections[0].text(fmt)]
    for section in sections[1:]:
        heading = HEADINGS[section.name]
        texts.append({"md": f"\n### {heading}\n\n", "latex": f"\n\\paragraph{{{heading}}}\n\n"}.get(fmt, "")
                     + section.text(fmt))
    return "".join(texts)


def _images(rows: pd.DataFrame, drawn: list[Path], plots: Path | None) -> list[tuple[str, bytes]]:
    """The plots as (file name, PNG bytes): those drawn into ``--plots``, else drawn now into a temporary folder."""
    if plots is not None:
        return [(path.name, path.read_bytes()) for path in drawn]
    from bench.report.plots import draw_plots

    with tempfile.TemporaryDirectory(prefix="modbench-plots-") as folder:
        return [(path.name, path.read_bytes()) for path in draw_plots(rows, Path(folder))]
