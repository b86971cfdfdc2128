"""Gather the records under a runs directory: every readable one, and a one-line reason for each other file."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.record import BadRecord, Composition, Record, baseline_check, read_composition, read_record


@dataclass
class Loaded:
    """The records read (sorted by path), one warning per ``record.json`` that was skipped, and one per record
    whose figures were not all finite (those are shown as missing); the compositions across models read."""

    records: list[Record] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    blanked: list[str] = field(default_factory=list)
    compositions: list[Composition] = field(default_factory=list)


def load_records(runs: Path) -> Loaded:
    """Every record (and composition across models) under ``runs``; a bad file is skipped with a warning, never
    breaks the others.

    Two records of one configuration, seed and threshold (a store that outlived a modbench version
    whose stage keys changed) are one seed, not two: the newest file is read, the older one skipped
    with a warning naming both.
    """
    loaded = Loaded()
    newest: dict[tuple, tuple[float, Path, Record]] = {}
    for path in sorted(runs.rglob("record.json")):
        try:
            record = read_record(path)
        except BadRecord as exc:
            loaded.skipped.append(str(exc))
            continue
        blanked = blank_nonfinite(record)
        if blanked:
            loaded.blanked.append(nonfinite_warning(path, blanked))
        key = (record["config_key"], record["seed"], repr(record["threshold"]))
        entry = (path.stat().st_mtime, path, record)
        if key in newest:
            older, entry = sorted([newest[key], entry], key=lambda e: e[0])
            loaded.skipped.append(f"{older[1]}: an older record of the configuration, seed and threshold of {entry[1]}")
        newest[key] = entry
    loaded.records = [record for _, _, record in sorted(newest.values(), key=lambda e: e[1])]
    fill_baselines(loaded.records)
    for path in sorted(runs.rglob("composition.json")):
        try:
            loaded.compositions.append(read_composition(path))
        except BadRecord as exc:
            loaded.skipped.append(str(exc))
    return loaded


FIGURES = ("model_metrics", "modularization")


def blank_nonfinite(record: Record, missing: float | None = math.nan) -> list[str]:
    """Set the figures of ``record`` that are NaN or infinite to ``missing`` (NaN: what the tables show as
    missing, and still a number to the record's schema; None for JSON); their names and values,
    ``tasks[0,1].latency_ratio=inf``."""
    found: list[str] = []
    for part in FIGURES:
        _blank(record[part], part, found, missing)
    for task in record["tasks"]:
        _blank(task, f"tasks[{','.join(map(str, task.get('classes', [])))}]", found, missing)
    return found


def _blank(values: dict[str, Any] | None, where: str, found: list[str], missing: float | None) -> None:
    for key, value in (values or {}).items():
        if isinstance(value, dict):
            _blank(value, f"{where}.{key}", found, missing)
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(f"{where}.{key}={value}")
            values[key] = missing


def nonfinite_warning(path: Path, blanked: list[str]) -> str:
    """The one line that says which figures of the record at ``path`` are shown as missing."""
    return f"{path}: figures that are not finite numbers, shown as missing: {', '.join(blanked)}"


def _cell(record: Record) -> tuple:
    return (record["dataset"], str(sorted(record["dataset_args"].items())), record["model"],
            str(sorted(record["model_args"].items())), record["seed"], record["preset"])


def fill_baselines(records: list[Record]) -> None:
    """Give records without a ``baseline`` (schema 1) the one their standard record implies.

    The standard record of the same data set, model, seed and preset is the baseline a record was
    measured against; when exactly one configuration of it is there (any threshold), the "below_method" rule of
    ``bench.record.baseline_check`` applies (the record does not say its number of classes, so
    the chance rule cannot).
    """
    standards: dict[tuple, dict[str, float]] = defaultdict(dict)  # cell -> {config_key: test accuracy}
    for record in records:
        if record["method"] == "standard" and record["model_metrics"] and not record["error"]:
            standards[_cell(record)][record["config_key"]] = record["model_metrics"]["test_acc"]
    for record in records:
        candidates = list(standards.get(_cell(record), {}).values())
        if record["baseline"] is None and len(candidates) == 1 and record["model_metrics"]:
            record["baseline"] = baseline_check(candidates[0], record["model_metrics"]["test_acc"], None)


def compositions_of(runs: Path, records: list[Record]) -> list[Composition]:
    """The compositions under ``runs`` whose members are all among ``records`` (what a run just computed)."""
    ids = {record["run_id"] for record in records}
    found = []
    for path in sorted(runs.rglob("composition.json")):
        try:
            composition = read_composition(path)
        except BadRecord:
            continue
        if {member["run_id"] for member in composition["members"]} <= ids:
            found.append(composition)
    return found
