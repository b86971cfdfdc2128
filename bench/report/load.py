"""Gather the records under a runs directory: every readable one, and a one-line reason for each other file."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.record import BadRecord, Record, baseline_check, read_record


@dataclass
class Loaded:
    """The records read (sorted by path) and one warning per ``record.json`` that was skipped."""

    records: list[Record] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_records(runs: Path) -> Loaded:
    """Every record under ``runs``; a bad file is skipped with a warning, never breaks the others.

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
        key = (record["config_key"], record["seed"], repr(record["threshold"]))
        entry = (path.stat().st_mtime, path, record)
        if key in newest:
            older, entry = sorted([newest[key], entry], key=lambda e: e[0])
            loaded.skipped.append(f"{older[1]}: an older record of the configuration, seed and threshold of {entry[1]}")
        newest[key] = entry
    loaded.records = [record for _, _, record in sorted(newest.values(), key=lambda e: e[1])]
    fill_baselines(loaded.records)
    return loaded


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
