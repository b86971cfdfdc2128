"""The record stage: one ``record.json`` per cell and threshold, written atomically through ``bench.record``.

A record never loses what an earlier run measured: tasks accumulate (a re-run with other
``--tasks`` adds to the record), and a re-run that fails keeps the figures of a valid record,
adding the failure as ``last_error``. Only a cell that never produced figures gets an error record.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import CorruptArtifact
from bench.grid.resolve import Resolved
from bench.pipeline import store
from bench.pipeline.stages.base import Stage
from bench.record import RECORD_SCHEMA, Baseline, Cost, Record, config_key, read_record, to_json

log = logging.getLogger("bench")
TASK_PRIVATE = ("finetune_history", "module_sha256")  # kept in the task's own file, not in the record


@dataclasses.dataclass
class Figures:
    """What a cell measured at one threshold (None where a failed run did not get that far)."""

    model_metrics: dict[str, Any] | None = None
    modularization: dict[str, Any] | None = None
    tasks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    baseline: Baseline | None = None
    cost: Cost | None = None
    patching: dict[str, Any] | None = None


def _stale(path: Path, task: dict[str, Any], changed: Callable[[tuple[int, ...]], str | None] | None) -> bool:
    """Whether an earlier record's task was computed from other inputs than the record being written (warned)."""
    reason = changed(tuple(task["classes"])) if changed is not None else None
    if reason is not None:
        label = ",".join(map(str, task["classes"]))
        log.warning("%s: task %s was computed %s; it is dropped from the record (--tasks %s computes it again)",
                    path, label, reason, label)
    return reason is not None


class RecordStage(Stage):
    """Builds a cell's record and writes it without ever replacing good figures by worse news."""

    def build(self, r: Resolved, env: dict[str, Any], threshold: float, directory: Path,
              figures: Figures, error: str | None = None) -> Record:
        """The record of ``r`` at ``threshold``, to be written in ``directory``."""
        record: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "run_id": directory.relative_to(self.ws.out).as_posix(),
            "method": r.method.name, "model": r.model.name, "model_args": r.model.kwargs,
            "family": r.spec.family, "dataset": r.dataset.name, "dataset_args": r.dataset.kwargs,
            "seed": r.seed, "preset": r.preset, "threshold": threshold, "hparams": r.hparam_values,
            "recipe": dataclasses.asdict(r.recipe), "settings": {
                "recipe": dict(r.overrides.recipe), "hparams": r.overrides.for_method(r.method.name)},
            "precision": self.ws.precision(r),
            "deterministic": r.recipe.deterministic, "env": env,
            "model_metrics": figures.model_metrics, "modularization": figures.modularization,
            "tasks": [{k: v for k, v in t.items() if k not in TASK_PRIVATE} for t in figures.tasks],
            "train_history": figures.history, "baseline": figures.baseline, "cost": figures.cost,
            "error": error, "last_error": None,
        }
        if figures.patching is not None:
            record["patching"] = figures.patching
        record["config_key"] = config_key(record)
        return record  # type: ignore[return-value]

    def write(self, directory: Path, record: Record, changed: Callable[[tuple[int, ...]], str | None] | None = None,
              inputs: dict[str, str] | None = None) -> Record:
        """Write ``record``, keeping the tasks of an earlier valid record of the same folder that were computed
        from the same inputs: ``changed(classes)`` says what changed for a task computed from others (another
        trained model after its data changed, say), and such a task is dropped with a warning. A task written
        again keeps the controls its earlier entry had and it lacks (``merged_tasks``). The earlier
        patched classes are kept likewise when computed from ``inputs`` (the trained model and module masks)."""
        path = directory / "record.json"
        with store.locked(directory):
            previous = self._previous(path)
            if previous is not None:
                done = {frozenset(t["classes"]) for t in record["tasks"]}  # a task is a set of classes
                earlier = [t for t in previous["tasks"] if frozenset(t["classes"]) in done
                           or not _stale(path, t, changed)]
                record["tasks"] = merged_tasks(record["tasks"], earlier)
                _keep_patching(path, record, previous, inputs)
            store.atomic_write(path, to_json(record).encode())
        return record

    def write_failure(self, directory: Path, record: Record, message: str) -> Record:
        """Record a failed run: as ``last_error`` of a valid earlier record, else as an error record."""
        path = directory / "record.json"
        with store.locked(directory):
            previous = self._previous(path)
            if previous is not None:
                when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                previous["last_error"] = {"message": message, "when": when}
                record = previous
            store.atomic_write(path, to_json(record).encode())
        return record

    @staticmethod
    def _previous(path: Path) -> Record | None:
        """The valid record already at ``path`` (None when there is none, or it failed, or it is unreadable)."""
        if not path.exists():
            return None
        try:
            record = read_record(path)
        except CorruptArtifact as exc:
            log.warning("%s; it will be replaced", exc)
            return None
        return record if record["error"] is None else None


def merged_tasks(tasks: list[dict[str, Any]], previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tasks``, then the ``previous`` tasks they lack; a task keeps the controls of its earlier entry that it
    lacks when that entry measured the same module (equal accuracies and size: a re-run with other --controls
    loses nothing measured, and a module computed anew never inherits another module's controls)."""
    earlier = {frozenset(t["classes"]): t for t in previous}  # a task is a set of classes
    merged = []
    for task in tasks:
        old = earlier.get(frozenset(task["classes"]), {})
        same = all(old.get(k) == task.get(k) for k in ("module_acc", "module_acc_before_finetune", "params"))
        controls = {**(old.get("controls", {}) if same else {}), **task.get("controls", {})}
        merged.append({**task, "controls": controls} if controls else task)
    done = {frozenset(t["classes"]) for t in tasks}
    return merged + [t for t in previous if frozenset(t["classes"]) not in done]


def _keep_patching(path: Path, record: Record, previous: Record, inputs: dict[str, str] | None) -> None:
    """Keep the earlier record's patched classes: all of them when this run patched nothing, those this run
    did not patch when it used the same settings (other settings replace them); none when they were computed
    from another trained model or other module masks than ``inputs`` (warned)."""
    earlier = previous.get("patching")
    if earlier is None:
        return
    if inputs is not None and earlier.get("inputs") != inputs:
        log.warning("%s: the patched classes were computed from another trained model or other module masks; "
                    "they are dropped from the record (--scenario patch computes them again)", path)
        return
    current = record.get("patching")
    if current is None:
        record["patching"] = earlier
    elif current["settings"] == earlier["settings"]:
        done = {(e["label"], e["strategy"]) for e in current["entries"]}
        current["entries"] += [e for e in earlier["entries"] if (e["label"], e["strategy"]) not in done]
