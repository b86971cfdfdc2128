"""One grid cell end to end: train (or load), modularize per threshold, reuse per task, record.

Every stage is cached under a key of what determines it (see ``bench.store``), so a re-run
recomputes nothing that is complete and a killed run loses only the stage in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.data import BatchLoader, DataBundle
from bench.errors import BenchError, CorruptArtifact
from bench.grid.config import CellConfig, GridConfig, coerce_fields
from bench.grid.presets import recipe_for, with_overrides
from bench.models.spec import ModelSpec
from bench.modular.activity import collect_activity
from bench.modular.head import attach_head
from bench.pipeline import metrics, store
from bench.pipeline.env import environment
from bench.pipeline.progress import Bars
from bench.pipeline.training import Schedule, cross_entropy_loss, distillation_loss, fit
from bench.plugins.manager import Plugins
from bench.protocol.method import Method, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ActivityStats, ModuleSet
from bench.protocol.recipe import Recipe
from bench.refs import Ref

log = logging.getLogger("bench")

RECORD_SCHEMA = 1
STAGE_SCHEMA = 1  # bump to invalidate every cached stage after a change of what a stage computes
TRAIN_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "nesterov", "schedule",
                "warmup_epochs", "val_fraction", "precision", "deterministic")
REUSE_FIELDS = ("finetune_epochs", "finetune_lr", "batch_size", "optimizer", "weight_decay", "momentum",
                "nesterov", "val_fraction", "precision", "deterministic")
STANDARD = "standard"


def stage_values(hparams: Any, stage: str) -> dict[str, Any]:
    """Hyperparameters that affect ``stage`` ('train', 'modularize', 'compose').

    A field declares its stage with ``field(metadata={"stage": "compose"})``; the default is 'train'.
    """
    if not dataclasses.is_dataclass(hparams):
        return {}
    return {f.name: getattr(hparams, f.name) for f in dataclasses.fields(hparams)
            if f.metadata.get("stage", "train") == stage}


@dataclass
class Resolved:
    """A cell's names resolved against the registries, with its recipe and hyperparameters."""

    method: Method
    spec: ModelSpec
    model: Ref
    dataset: Ref
    seed: int
    recipe: Recipe
    hparams: Any



@dataclass
class Trained:
    """A trained model with its stage information and directory."""

    model: TrainedModel
    info: dict[str, Any]
    directory: Path


@dataclass
class Reference:
    """The standard model a cell is measured against: its trained model, size and FLOPs."""

    trained: Trained
    params: int
    flops: int


class Session:
    """What one process shares while it runs cells: plugins, device, data sets, bars."""

    def __init__(self, grid: GridConfig, plugins: Plugins, device: torch.device, bars: Bars) -> None:
        self.grid = grid
        self.plugins = plugins
        self.device = device
        self.bars = bars
        self._data: dict[Ref, DataBundle] = {}
        self._references: dict[Path, Reference] = {}

    # ----- resolution -------------------------------------------------------------------------
    def data(self, ref: Ref, val_fraction: float) -> DataBundle:
        """The data set ``ref`` (loaded once per process)."""
        key = Ref(ref.name, (*ref.args, ("__val", val_fraction)))
        if key not in self._data:
            spec = self.plugins.datasets.get(ref.name)
            self._data[key] = spec.load(self.grid.data_root, self.grid.download, val_fraction, **ref.kwargs)
        return self._data[key]

    def recipe(self, method: str, spec: ModelSpec, model: Ref, dataset: str) -> Recipe:
        """The preset's recipe for this model, with the run's ``--set`` values."""
        base = recipe_for(self.grid.preset, method, spec, model.kwargs, dataset)
        values = coerce_fields(Recipe, dict(self.grid.overrides.recipe), "recipe")
        return with_overrides(base, values)

    def resolve(self, method_name: str, model: Ref, dataset: Ref, seed: int) -> Resolved:
        """Look names up in the registries and build the cell's recipe and hyperparameters."""
        method = self.plugins.methods.get(method_name)
        spec = self.plugins.models.get(model.name)
        model = Ref(spec.name, model.args)
        spec.check_args(model.kwargs)
        hparams = method.hparams(spec)
        if dataclasses.is_dataclass(hparams):
            values = coerce_fields(type(hparams), self.grid.overrides.for_method(method.name), f"method {method.name}")
            hparams = dataclasses.replace(hparams, **values)
        recipe = self.recipe(method.name, spec, model, dataset.name)
        return Resolved(method, spec, model, dataset, seed, recipe, hparams)

    def run_info(self, r: Resolved) -> dict[str, Any]:
        """How events identify a cell: its names, seed and directory."""
        return {"method": r.method.name, "model": str(r.model), "dataset": str(r.dataset), "seed": r.seed,
                "directory": str(self.train_dir(r))}

    # ----- paths and loaders --------------------------------------------------------------------
    def train_key(self, r: Resolved) -> str:
        """Hash of everything that determines the trained model."""
        teacher = self.train_key(self.teacher_of(r)) if r.spec.teacher else None
        return store.key_of({
            "schema": STAGE_SCHEMA, "method": r.method.name, "hparams": stage_values(r.hparams, "train"),
            "model": str(r.model), "dataset": str(r.dataset), "seed": r.seed, "teacher": teacher,
            "recipe": {k: getattr(r.recipe, k) for k in TRAIN_FIELDS},
        })

    def train_dir(self, r: Resolved) -> Path:
        """``runs/<dataset>/<model>/<method>/<train-key>``."""
        return self.grid.out / r.dataset.slug / r.model.slug / r.method.name / self.train_key(r)

    def teacher_of(self, r: Resolved) -> Resolved:
        """The standard-trained teacher a distilled model learns from."""
        return self.resolve(STANDARD, self.plugins.teacher_ref(r.model), r.dataset, r.seed)

    def loader(self, r: Resolved, split: str, data: DataBundle | None = None, train: bool = False) -> BatchLoader:
        """Batches of one split: shuffled and augmented for training, in order otherwise."""
        data = data or self.data(r.dataset, r.recipe.val_fraction)
        tensors = getattr(data, split)
        batch = r.recipe.batch_size if train else r.recipe.eval_batch_size
        return BatchLoader(tensors, batch, mean=data.mean, std=data.std, device=self.device, shuffle=train,
                           augment=data.augment if train else "none", seed=r.seed,
                           drop_last=train and len(tensors) > batch)

    # ----- train stage ------------------------------------------------------------------------
    def trained(self, r: Resolved) -> Trained:
        """The trained model of ``r``: loaded when its checkpoint is complete, trained otherwise."""
        directory = self.train_dir(r)
        with store.locked(directory):
            info = store.read_json(directory / "train.json")
            if info is not None:
                try:
                    model = self._architecture(r)
                    model.load_state_dict(store.load_tensors(directory / "model.pt", info["sha256"], self.device))
                    return Trained(TrainedModel(model, info["history"]), info, directory)
                except (CorruptArtifact, RuntimeError, KeyError) as exc:
                    log.warning("%s: %s; training again", directory, exc)
            return self._train(r, directory)

    def _context(self, r: Resolved, for_training: bool = True) -> TrainContext:
        data = self.data(r.dataset, r.recipe.val_fraction)

        def new_model() -> nn.Module:
            return r.spec.build(data.num_classes, **r.model.kwargs).to(self.device)

        task_loss = cross_entropy_loss
        if r.spec.teacher and for_training:  # rebuilding a cached model's architecture needs no teacher
            teacher = self.trained(self.teacher_of(r)).model.model.eval().requires_grad_(False)
            task_loss = distillation_loss(teacher)
        return TrainContext(r.spec, r.model.kwargs, data, self.device, r.recipe, r.hparams, r.seed,
                            fit=self._fitter(r, data), task_loss=task_loss, new_model=new_model)

    def _architecture(self, r: Resolved) -> nn.Module:
        torch.manual_seed(r.seed)
        return r.method.build(self._context(r, for_training=False)).to(self.device)

    def _fitter(self, r: Resolved, data: DataBundle) -> Callable[..., list[dict[str, float]]]:
        def run_fit(model: nn.Module, loss_fn: Callable | None = None, groups: list[dict] | None = None
                    ) -> list[dict[str, float]]:
            train, val = self.loader(r, "train", data, train=True), self.loader(r, "val", data)
            schedule = Schedule(r.recipe.epochs, r.recipe.lr, r.recipe.schedule, r.recipe.warmup_epochs)
            self.bars.start("stage", f"train {r.method.name} {r.model}", r.recipe.epochs)
            self.bars.start("batch", "  batches", len(train))
            return fit(model, train, val, r.recipe, schedule, loss_fn or cross_entropy_loss, groups,
                       on_batch=lambda: self.bars.advance("batch"),
                       on_epoch=lambda row: self._epoch_done(r, "train", row, len(train)))
        return run_fit

    def _epoch_done(self, r: Resolved, stage: str, row: dict[str, float], batches: int) -> None:
        self.bars.advance("stage")
        self.bars.start("batch", "  batches", batches)
        shown = "  ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
        log.info("%s %s %s epoch %d: %s", stage, r.method.name, r.model, row["epoch"], shown)
        self.plugins.emit("epoch_end", self.run_info(r), {"stage": stage, **row})

    def _train(self, r: Resolved, directory: Path) -> Trained:
        log.info("training %s on %s (%s, seed %d)", r.method.name, r.model, r.dataset, r.seed)
        torch.manual_seed(r.seed)
        ctx = self._context(r)
        ctx.model = r.method.build(ctx).to(self.device)
        start = time.perf_counter()
        trained = r.method.train(ctx)
        seconds = time.perf_counter() - start
        state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        info = {"sha256": store.save_tensors(directory / "model.pt", state), "seconds": seconds,
                "history": trained.history, "method": r.method.name, "model": str(r.model),
                "dataset": str(r.dataset), "seed": r.seed, "hparams": dataclasses.asdict(r.hparams)
                if dataclasses.is_dataclass(r.hparams) else {}, "recipe": dataclasses.asdict(r.recipe)}
        store.write_json(directory / "train.json", info)
        self.bars.hide("stage")
        self.bars.hide("batch")
        self.plugins.emit("stage_end", self.run_info(r),
                          {"stage": "train", "seconds": seconds, "history": trained.history})
        return Trained(trained, info, directory)

    # ----- the trained model's own numbers -----------------------------------------------------
    def model_metrics(self, r: Resolved, trained: Trained) -> dict[str, Any]:
        """Test accuracy, parameters and FLOPs of the model as trained (cached in metrics.json)."""
        path = trained.directory / "metrics.json"
        cached = store.read_json(path)
        if cached is not None and cached.get("sha256") == trained.info["sha256"]:
            return cached["metrics"]
        model = trained.model.model
        values = {"test_acc": metrics.accuracy(model, self.loader(r, "test")),
                  "params": metrics.count_params(model), "flops": metrics.count_flops(model),
                  "train_seconds": trained.info["seconds"]}
        store.write_json(path, {"sha256": trained.info["sha256"], "metrics": values})
        return values

    def reference(self, r: Resolved) -> Reference:
        """The standard model of ``r``'s model, data set and seed, with its size and FLOPs."""
        standard = self.resolve(STANDARD, r.model, r.dataset, r.seed)
        trained = self.trained(standard)
        if trained.directory not in self._references:
            numbers = self.model_metrics(standard, trained)
            self._references[trained.directory] = Reference(trained, numbers["params"], numbers["flops"])
        return self._references[trained.directory]

    def standard_task_accuracy(self, r: Resolved, ref: Reference, classes: tuple[int, ...]) -> float:
        """The standard model on a task: logits restricted to the target classes, no fine-tuning."""
        path = ref.trained.directory / "tasks" / f"standard-{store.classes_label(classes)}.json"
        cached = store.read_json(path)
        if cached is not None and cached.get("sha256") == ref.trained.info["sha256"]:
            return cached["acc"]
        task = self.data(r.dataset, r.recipe.val_fraction).task(classes)
        acc = metrics.accuracy(ref.trained.model.model, self.loader(r, "test", task), columns=classes)
        store.write_json(path, {"sha256": ref.trained.info["sha256"], "acc": acc})
        return acc

    # ----- modularize stage ----------------------------------------------------------------------
    def stage_context(self, r: Resolved, trained: Trained, threshold: float,
                      activity: Callable[[], ActivityStats]) -> StageContext:
        """What ``modularize`` and ``compose`` receive."""
        data = self.data(r.dataset, r.recipe.val_fraction)
        return StageContext(r.spec, data, self.device, r.recipe, r.hparams, threshold, activity)

    def activity_of(self, r: Resolved, trained: Trained) -> Callable[[], ActivityStats]:
        """A cached, lazily computed activity pass of the trained model over the training split."""
        cache: list[ActivityStats] = []

        def get() -> ActivityStats:
            if not cache:
                loader = self.loader(r, "train")
                self.bars.start("stage", f"activity {r.method.name} {r.model}", len(loader))
                data = self.data(r.dataset, r.recipe.val_fraction)
                cache.append(collect_activity(trained.model.model, loader, data.num_classes,
                                              r.recipe.activity_samples, lambda: self.bars.advance("stage")))
                self.bars.hide("stage")
            return cache[0]
        return get

    def modules(self, r: Resolved, trained: Trained, threshold: float,
                activity: Callable[[], ActivityStats]) -> tuple[ModuleSet, dict[str, Any]]:
        """The module masks for ``threshold`` and their modularity metrics (cached)."""
        directory = store.threshold_dir(trained.directory, threshold)
        key = store.key_of({"schema": STAGE_SCHEMA, "threshold": threshold, "model": trained.info["sha256"],
                            "hparams": stage_values(r.hparams, "modularize"),
                            "samples": r.recipe.activity_samples})
        with store.locked(directory):
            info = store.read_json(directory / "modules.json")
            if info is not None and info.get("key") == key:
                try:
                    state = store.load_tensors(directory / "modules.pt", info["sha256"])
                    return ModuleSet.from_state(state), info["metrics"]
                except CorruptArtifact as exc:
                    log.warning("%s; modularizing again", exc)
            start = time.perf_counter()
            stats = activity()
            ctx = self.stage_context(r, trained, threshold, activity)
            modules = r.method.modularize(ctx, trained.model)
            values = {"threshold": threshold, "unit": modules.unit, "units_total": int(modules.masks.shape[1]),
                      "retention": metrics.retention(modules.masks), "cohesion": metrics.cohesion(stats, modules),
                      "coupling": metrics.coupling(modules), "seconds": time.perf_counter() - start}
            digest = store.save_tensors(directory / "modules.pt", modules.to_state())
            store.write_json(directory / "modules.json", {"key": key, "sha256": digest, "metrics": values})
            self.plugins.emit("stage_end", self.run_info(r), {"stage": "modularize", **values})
            return modules, values

    # ----- reuse stage -----------------------------------------------------------------------------
    def reuse(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext,
              classes: tuple[int, ...], ref: Reference) -> dict[str, Any]:
        """Compose, score, fine-tune and measure the module for one task (cached per task)."""
        directory = store.threshold_dir(trained.directory, ctx.threshold) / "tasks"
        key = store.key_of({"schema": STAGE_SCHEMA, "modules": store.key_of(modules.masks.tolist()),
                            "model": trained.info["sha256"], "standard": ref.trained.info["sha256"],
                            "hparams": stage_values(r.hparams, "compose"),
                            "recipe": {k: getattr(r.recipe, k) for k in REUSE_FIELDS}})
        path = directory / f"{store.classes_label(classes)}-{key}.json"
        cached = store.read_json(path)
        if cached is not None:
            return cached
        start = time.perf_counter()
        task = ctx.data.task(classes)
        torch.manual_seed(r.seed)
        module = r.method.compose(ctx, trained.model, modules, classes).to(self.device)
        before = metrics.accuracy(module, self.loader(r, "test", task), columns=classes)
        after = before
        history: list[dict[str, float]] = []
        if self.finetunes(r):
            module = attach_head(module, ctx.num_classes, len(classes))
            history = self._finetune(r, module, task)
            after = metrics.accuracy(module, self.loader(r, "test", task))
        weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        params, flops = metrics.count_params(module), metrics.count_flops(module)
        kept = modules.masks[list(classes)]
        entry = {
            "classes": list(classes), "module_acc": after, "module_acc_before_finetune": before,
            "standard_acc": self.standard_task_accuracy(r, ref, classes),
            "retention": metrics.retention(kept.any(dim=0)),
            "retention_sum": float(kept.sum()) / modules.masks.shape[1],
            "params": params, "weight_retention": params / ref.params, "flops": flops,
            "flops_ratio": flops / ref.flops,
            "latency_ratio": metrics.latency_ratio(module, ref.trained.model.model, r.recipe.latency_batch),
            "finetune_history": history, "seconds": time.perf_counter() - start,
            "module_file": path.with_suffix(".pt").name,
            "module_sha256": store.save_tensors(path.with_suffix(".pt"), weights),
        }
        store.write_json(path, entry)
        self.plugins.emit("stage_end", self.run_info(r), {"stage": "reuse", **entry})
        return entry

    @staticmethod
    def finetunes(r: Resolved) -> bool:
        """Whether ``r``'s reused modules get a task head and fine-tuning."""
        return r.method.finetune and r.recipe.finetune_epochs > 0

    def _finetune(self, r: Resolved, module: nn.Module, task: DataBundle) -> list[dict[str, float]]:
        train, val = self.loader(r, "train", task, train=True), self.loader(r, "val", task)
        schedule = Schedule(r.recipe.finetune_epochs, r.recipe.finetune_lr, "cosine", horizon=2.0)
        self.bars.start("stage", f"fine-tune {r.method.name} {r.model}", r.recipe.finetune_epochs)
        self.bars.start("batch", "  batches", len(train))
        history = fit(module, train, val, r.recipe, schedule, select_best=True,
                      on_batch=lambda: self.bars.advance("batch"),
                      on_epoch=lambda row: self._epoch_done(r, "finetune", row, len(train)))
        self.bars.hide("stage")
        self.bars.hide("batch")
        return history

    # ----- the cell ----------------------------------------------------------------------------------
    def finished(self, cell: CellConfig) -> list[dict[str, Any]] | None:
        """The cell's records when every threshold has one without error covering the grid's tasks."""
        if not cell.record:
            return None
        directory = self.train_dir(self.resolve(cell.method, cell.model, cell.dataset, cell.seed))
        records = []
        for threshold in cell.grid.thresholds:
            record = store.read_json(store.threshold_dir(directory, threshold) / "record.json")
            if record is None or record.get("error"):
                return None
            if {tuple(t["classes"]) for t in record["tasks"]} != set(cell.grid.tasks):
                return None
            records.append(record)
        return records

    def run_cell(self, cell: CellConfig) -> list[dict[str, Any]]:
        """Run every stage of ``cell`` and write one record per threshold; errors go into the record."""
        r = self.resolve(cell.method, cell.model, cell.dataset, cell.seed)
        started = environment(self.device)
        thresholds = cell.grid.thresholds if cell.record else ()
        partial: dict[str, Any] = {}
        try:
            trained = self.trained(r)
            if not cell.record:
                return []
            partial["model_metrics"] = self.model_metrics(r, trained)
            ref = self.reference(r)
            activity = self.activity_of(r, trained)
            records = []
            for threshold in thresholds:
                modules, modularization = self.modules(r, trained, threshold, activity)
                ctx = self.stage_context(r, trained, threshold, activity)
                tasks = [self.reuse(r, trained, modules, ctx, classes, ref) for classes in cell.grid.tasks]
                record = self._record(r, started, threshold, trained.directory, partial["model_metrics"],
                                      modularization, tasks, trained.model.history)
                store.write_json(store.threshold_dir(trained.directory, threshold) / "record.json", record)
                records.append(record)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one failing cell is recorded and the grid goes on
            message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
            log.error("%s failed: %s", cell.label, message)
            if not isinstance(exc, BenchError):
                log.debug("traceback", exc_info=True)
            directory = self.train_dir(r)
            records = []
            for threshold in thresholds:
                record = self._record(r, started, threshold, directory, partial.get("model_metrics"), None, [])
                record["error"] = message
                store.write_json(store.threshold_dir(directory, threshold) / "record.json", record)
                records.append(record)
        for record in records:
            self.plugins.emit("run_end", self.run_info(r), record)
        return records

    def _record(self, r: Resolved, env: dict[str, Any], threshold: float, directory: Path,
                model_metrics: dict[str, Any] | None, modularization: dict[str, Any] | None,
                tasks: Sequence[dict[str, Any]], history: list[dict[str, float]] | None = None) -> dict[str, Any]:
        return {
            "schema": RECORD_SCHEMA,
            "run_id": str(store.threshold_dir(directory, threshold).relative_to(self.grid.out)),
            "method": r.method.name, "model": r.model.name, "model_args": r.model.kwargs,
            "family": r.spec.family, "dataset": r.dataset.name, "dataset_args": r.dataset.kwargs,
            "seed": r.seed, "preset": self.grid.preset, "threshold": threshold,
            "hparams": dataclasses.asdict(r.hparams) if dataclasses.is_dataclass(r.hparams) else {},
            "recipe": dataclasses.asdict(r.recipe), "env": env,
            "model_metrics": model_metrics, "modularization": modularization,
            "tasks": [{k: v for k, v in t.items() if k not in ("finetune_history", "module_sha256")} for t in tasks],
            "train_history": history or [],
            "error": None,
        }
