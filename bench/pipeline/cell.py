"""One grid cell end to end: train (or load), evaluate, and per threshold modularize, reuse each task, record.

A thin orchestrator over the stages in ``bench.pipeline.stages``; each stage caches its own result,
so a re-run recomputes nothing that is complete and a killed run loses only the stage in flight.
A failing cell is recorded (or, when it has figures already, keeps them and notes the failure)
while the grid goes on.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from bench.errors import BenchError, StoreUnwritable
from bench.grid.config import CellConfig
from bench.grid.resolve import Resolved
from bench.pipeline import layout, store
from bench.pipeline.env import configure_kernels, environment
from bench.pipeline.scenarios.outputs import ClassOutputsStage
from bench.pipeline.scenarios.patch import PatchStage, patch_inputs, patched_classes, patching_covers
from bench.pipeline.scenarios.weak import WeakStage
from bench.pipeline.stages.controls import ControlStage
from bench.pipeline.stages.evaluate import EvaluateStage, Reference
from bench.pipeline.stages.modularize import ModularizeStage
from bench.pipeline.stages.record import Figures, RecordStage
from bench.pipeline.stages.reuse import ReuseStage, mask_digest
from bench.pipeline.stages.train import Trained, TrainStage
from bench.pipeline.workspace import Workspace
from bench.protocol.method import StageContext
from bench.protocol.modules import ModuleSet
from bench.record import Cost, Record, baseline_check, read_record, training_cost

log = logging.getLogger("bench")


class CellRunner:
    """Runs cells through the stages, sharing one workspace (data sets, activity passes, references)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.train = TrainStage(ws)
        self.evaluate = EvaluateStage(ws, self.train)
        self.modularize = ModularizeStage(ws)
        self.reuse = ReuseStage(ws, self.evaluate)
        self.controls = ControlStage(ws, self.reuse)
        self.record = RecordStage(ws)
        self.outputs = ClassOutputsStage(ws, self.reuse)
        self.patch = PatchStage(ws, self.outputs, WeakStage(ws, self.train))
        ws.locate = self.train.directory

    def resolve(self, cell: CellConfig) -> Resolved:
        """The cell with its names, recipe and hyperparameters resolved."""
        return self.ws.resolver.cell(cell.method, cell.model, cell.dataset, cell.seed, cell.overrides)

    def record_dir(self, r: Resolved, threshold: float) -> Path:
        """Where the record of ``r`` at ``threshold`` lives (known before anything is computed)."""
        settings = self.reuse.settings(r, self.modularize.settings(r, threshold))
        return layout.reuse_dir(self.train.directory(r), threshold, settings)

    def run(self, cell: CellConfig) -> list[Record]:
        """Run every stage of ``cell``; returns one record per threshold (none for a dependency-only cell)."""
        r = self.resolve(cell)
        configure_kernels(self.ws.device, r.recipe.deterministic)
        if not cell.record:
            self.train.run(r)
            return []
        env = environment(self.ws.device)
        records: list[Record] = []
        figures = Figures()
        try:
            trained = self.train.run(r)
            figures.model_metrics = self.evaluate.model_metrics(r, trained)
            figures.history = trained.model.history
            ref = self.evaluate.reference(r)
            figures.baseline = self._baseline(cell, r, ref, figures.model_metrics["test_acc"])
            for threshold in cell.grid.thresholds:
                modules, figures.modularization = self.modularize.run(r, trained, threshold)
                ctx = self.modularize.context(r, trained, threshold)
                directory = self.record_dir(r, threshold)
                figures.tasks = [self._task(r, trained, modules, ctx, directory, classes, ref, cell.grid.controls)
                                 for classes in cell.grid.tasks]
                composing = sum(t.get("compose_seconds", 0.0) for t in figures.tasks)
                figures.cost = cost_of(trained, ref, figures.modularization["seconds"], composing)
                if cell.grid.scenarios.patch is not None:
                    figures.patching = self.patch.run(r, trained, modules, ctx, self.modularize.settings(r, threshold),
                                                      directory, patched_classes(cell.grid.tasks),
                                                      cell.grid.scenarios.patch)
                masks = mask_digest(modules)
                changed = functools.partial(self.reuse.changed, r, directory, trained.sha256, masks,
                                            ref.trained.sha256)  # what changed for an earlier record's task
                record = self.record.build(r, env, threshold, directory, figures)
                inputs = patch_inputs(r, trained.sha256, masks)  # what earlier patched classes must come from
                records.append(self.record.write(directory, record, changed, inputs))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one failing cell is recorded and the grid goes on
            message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
            log.error("%s failed: %s", cell.label, message)
            log.debug("traceback", exc_info=True)
            for threshold in cell.grid.thresholds[len(records):]:
                directory = self.record_dir(r, threshold)
                failed = self.record.build(r, env, threshold, directory, Figures(figures.model_metrics), message)
                try:
                    records.append(self.record.write_failure(directory, failed, message))
                except OSError as err:  # a full disk or a folder made read-only meanwhile: the grid stops here
                    raise StoreUnwritable(f"{cell.label} failed ({message}), and its record cannot be written in "
                                          f"{directory} ({err.strerror or err})") from None
        for record in records:
            self.ws.emit("run_end", r, dict(record))
        return records

    def _task(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, directory: Path,
              classes: tuple[int, ...], ref: Reference, controls: tuple[str, ...]) -> dict[str, Any]:
        """A task's record entry: its reused module, and the module's controls when the grid asks for them."""
        entry = self.reuse.run(r, trained, modules, ctx, directory, classes, ref)
        if controls:
            entry["controls"] = self.controls.run(r, trained, modules, ctx, directory, classes, ref, entry, controls)
        return entry

    def _baseline(self, cell: CellConfig, r: Resolved, ref: Reference, method_test_acc: float) -> dict | None:
        """The standard model's health, warned about in one line when it looks failed."""
        baseline = baseline_check(ref.test_acc, method_test_acc, self.ws.data_of(r).num_classes)
        if baseline["flag"] is not None:
            log.warning("%s: the standard baseline looks failed: %s", cell.label, baseline["message"])
        return baseline

    def finished(self, cell: CellConfig) -> list[Record] | None:
        """The cell's records when every threshold has a valid one covering the grid's tasks, whose module
        files verify and were computed from the trained model, module masks, standard model and data the store
        holds now; None otherwise (executors skip finished cells)."""
        if not cell.record:
            return None
        r = self.resolve(cell)
        model_sha = self.train.current_sha(r)
        standard_sha = self.train.current_sha(self.ws.resolver.standard_of(r))
        if model_sha is None or standard_sha is None:
            return None
        records = []
        for threshold in cell.grid.thresholds:
            directory = self.record_dir(r, threshold)
            try:
                record = read_record(directory / "record.json")
            except (BenchError, FileNotFoundError):
                return None
            tasks = {tuple(t["classes"]): t for t in record["tasks"]}
            if record["error"] is not None or not set(cell.grid.tasks) <= set(tasks):
                return None
            if not all(set(cell.grid.controls) <= set(tasks[c].get("controls", {})) for c in cell.grid.tasks):
                return None
            if not all(_module_file_verifies(directory, tasks[c]) for c in cell.grid.tasks):
                return None
            modules = self.modularize.stored(r, self.train.directory(r), model_sha, threshold)
            if modules is None:
                return None
            masks = mask_digest(modules)  # hashed once for every task's check and the patched classes'
            if any(self.reuse.changed(r, directory, model_sha, masks, standard_sha, c) for c in cell.grid.tasks):
                return None
            patch, inputs = cell.grid.scenarios.patch, patch_inputs(r, model_sha, masks)
            if patch is not None and not patching_covers(record, patch, patched_classes(cell.grid.tasks), inputs):
                return None
            records.append(record)
        return records


def cost_of(trained: Trained, ref: Reference, modularize_seconds: float, compose_seconds: float) -> Cost:
    """What ``trained``, its modules at one threshold and the run's tasks composed from them cost, against
    ``ref``'s standard model's training."""
    standard = ref.trained
    return training_cost(trained.seconds, modularize_seconds, standard.seconds, trained.device, standard.device,
                         trained.imported or standard.imported, compose_seconds)


def _module_file_verifies(directory: Path, task: dict) -> bool:
    return store.check_entry(layout.task_file(directory, tuple(task["classes"]))) is None
