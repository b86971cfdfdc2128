"""README.md's "Deviations from the authors' code" stays true: every value a row names for the
``reference`` preset or for modbench's own (``smoke``, ``paper``) is the value the code resolves
for the row's cells; a bare name is a figure the record schema declares for every task."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from bench.grid.presets import method_overrides, recipe_for
from bench.plugins.manager import get_plugins
from bench.record import TaskMetrics

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Deviations from the authors' code"
MODBENCH_PRESETS = ("smoke", "paper")


def deviation_rows() -> list[dict[str, str]]:
    """The section's table as one dict per row, keyed by the header's column names."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert SECTION in lines, f"README.md has no '{SECTION}' section"
    start = lines.index(SECTION)
    table = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    header, _rule, *body = table
    return [dict(zip(header, row, strict=True)) for row in body]


ROWS = deviation_rows()


def code_tokens(text: str) -> list[str]:
    """The backticked pieces of a table cell."""
    return re.findall(r"`([^`]+)`", text)


def resolved(preset: str, cell: str) -> dict[str, Any]:
    """Recipe fields and method hyperparameters that ``preset`` gives the cell 'method/model/dataset'."""
    method_name, model_name, dataset = cell.split("/")
    plugins = get_plugins()
    method, spec = plugins.methods.get(method_name), plugins.models.get(model_name)
    values = dataclasses.asdict(recipe_for(preset, method_name, spec, {}, dataset))
    hparams = method.hparams(spec)
    if dataclasses.is_dataclass(hparams):
        hparams = dataclasses.replace(hparams, **method_overrides(preset, method_name, spec, {}, dataset))
        values.update(dataclasses.asdict(hparams))
    return values


def same(actual: Any, written: str) -> bool:
    """Whether the README's ``written`` value spells ``actual``."""
    if isinstance(actual, bool):
        return written == str(actual).lower()
    if isinstance(actual, float):
        return actual == float(written)
    return str(actual) == written


def check_value(token: str, presets: tuple[str, ...], cells: list[str]) -> None:
    """``token`` ('key=value', 'preset:key=value' or a record field) holds for every cell under ``presets``."""
    if "=" not in token:
        assert token in TaskMetrics.__annotations__, f"'{token}' is not a figure of the record's tasks"
        return
    prefix, _, assignment = token.rpartition(":")
    key, _, written = assignment.partition("=")
    for preset in (prefix,) if prefix else presets:
        for cell in cells:
            values = resolved(preset, cell)
            assert key in values, f"{cell}: '{key}' is neither a recipe field nor a hyperparameter"
            assert same(values[key], written), f"{preset} {cell}: {key} is {values[key]!r}, the README says {written}"


@pytest.mark.parametrize("row", ROWS, ids=[row["aspect"] for row in ROWS])
def test_every_value_of_a_row_is_what_the_presets_resolve(row):
    cells = code_tokens(row["cells"])
    reference, modbench = code_tokens(row["`reference`"]), code_tokens(row["modbench"])
    assert cells and reference and modbench, "a row names its cells and a value for each column"
    for token in reference:
        check_value(token, ("reference",), cells)
    for token in modbench:
        check_value(token, MODBENCH_PRESETS, cells)


def test_the_table_covers_the_issue_aspects():
    aspects = " ".join(row["aspect"] for row in ROWS)
    for word in ("modular training", "standard baseline", "ViT module", "fine-tuning", "empty layer",
                 "NeMo alpha", "MwT beta", "activity", "SVHN augmentation", "weight retention"):
        assert word in aspects, f"no row about {word}"
