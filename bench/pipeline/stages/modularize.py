"""The modularize stage: per-class module masks for one threshold, with retention, cohesion, coupling.

The activity pass over the training split runs at most once per trained model and process, and
only when a threshold's modules are not cached. A long modularization (a search) keeps its state
in a checkpoint beside the stage's files, so a killed run resumes from its last saved step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.data import BatchLoader, TensorData
from bench.errors import PluginError, StageMissing
from bench.grid.resolve import Resolved
from bench.modular.activity import collect_activity
from bench.modular.masking import maskable_units
from bench.pipeline import layout, metrics, store
from bench.pipeline.progress import Bars
from bench.pipeline.stages.base import Stage, key_of
from bench.pipeline.stages.train import Trained, stage_values
from bench.pipeline.store import Stored
from bench.protocol.method import StageContext
from bench.protocol.modules import ActivityStats, ModuleSet


def _nothing() -> Stored:
    raise AssertionError("a read-only look-up computes nothing")


class FileCheckpoint:
    """A stage checkpoint in one checksummed tensor file (``weights_only`` loads; atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Any | None:
        """The last saved state, or None when there is none (or it is damaged: the search restarts)."""
        entry = store.read_json(self.path.with_suffix(".json"))
        if not isinstance(entry, dict) or not self.path.exists():
            return None
        try:
            return store.load_tensors(self.path, entry.get("sha256"))
        except store.CorruptArtifact:
            return None

    def save(self, state: Any) -> None:
        """Keep ``state``: the tensor file first, then the JSON holding its checksum."""
        digest = store.save_tensors(self.path, state)
        store.write_json(self.path.with_suffix(".json"), {"sha256": digest})


class BarProgress:
    """A long stage's progress on the run's 'stage' bar."""

    def __init__(self, bars: Bars) -> None:
        self.bars = bars

    def start(self, description: str, total: int) -> None:
        """(Re)start the bar."""
        self.bars.start("stage", description, total)

    def advance(self, description: str | None = None) -> None:
        """One step done, optionally with a new label."""
        self.bars.advance("stage")
        if description is not None:
            self.bars.describe("stage", description)


class ModularizeStage(Stage):
    """Module masks per threshold (cached); the activity pass they need runs lazily, once per model."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self._activity: dict[str, ActivityStats] = {}

    def settings(self, r: Resolved, threshold: float) -> str:
        """Hash of the settings that determine the modules of a trained model (names the stage's file)."""
        return key_of(threshold=threshold, hparams=stage_values(r.hparams, "modularize"),
                      samples=r.recipe.activity_samples, split=r.recipe.activity_split,
                      augment=r.recipe.activity_augment)

    def context(self, r: Resolved, trained: Trained, threshold: float) -> StageContext:
        """What ``modularize`` and ``compose`` receive."""
        settings = self.settings(r, threshold)
        checkpoint = FileCheckpoint(layout.search_file(trained.directory, threshold, settings))
        return StageContext(r.spec, self.ws.data_of(r), self.ws.device, r.recipe, r.hparams, threshold,
                            self._activity_of(r, trained), seed=r.seed, checkpoint=checkpoint,
                            progress=BarProgress(self.ws.bars))

    def run(self, r: Resolved, trained: Trained, threshold: float) -> tuple[ModuleSet, dict[str, Any]]:
        """The module masks for ``threshold`` and their modularity metrics."""
        settings = self.settings(r, threshold)

        def compute() -> Stored:
            start = time.perf_counter()
            ctx = self.context(r, trained, threshold)
            stats = ctx.activity()
            modules = self._checked(r, r.method.modularize(ctx, trained.model), trained, ctx.num_classes)
            values = {"threshold": threshold, "unit": modules.unit, "units_total": int(modules.masks.shape[1]),
                      "retention": metrics.retention(modules.masks), "cohesion": metrics.cohesion(stats, modules),
                      "coupling": metrics.coupling(modules), "seconds": time.perf_counter() - start}
            if modules.metrics:
                values["method_metrics"] = dict(modules.metrics)
            if "empty_layer_fallbacks" in modules.metrics:
                values["empty_layer_fallbacks"] = int(modules.metrics["empty_layer_fallbacks"])
            self.ws.emit("stage_end", r, {"stage": "modularize", **values})
            return Stored(values, modules.to_state())

        def restore(stored: Stored) -> tuple[ModuleSet, dict[str, Any]]:
            return ModuleSet.from_state(stored.tensors), dict(stored.info)

        path = layout.modules_file(trained.directory, threshold, settings)
        return self.cached(path, self.parts(r, settings, trained.sha256), compute, restore)

    def parts(self, r: Resolved, settings: str, model_sha: str) -> dict[str, Any]:
        """What determines the modules: their settings, the trained model and the data's content."""
        return {"settings": settings, "model": model_sha, **self.data_part(r)}

    def stored(self, r: Resolved, train_dir: Path, model_sha: str, threshold: float) -> ModuleSet | None:
        """The module masks the store holds for ``r`` at ``threshold``, when computed from the trained model
        ``model_sha`` and the current data (None otherwise); nothing is computed."""
        settings = self.settings(r, threshold)
        parts = self.parts(r, settings, model_sha)
        try:
            return store.cached(layout.modules_file(train_dir, threshold, settings), key_of(**parts), _nothing,
                                lambda stored: ModuleSet.from_state(stored.tensors), read_only=True)
        except StageMissing:
            return None

    def _checked(self, r: Resolved, modules: ModuleSet, trained: Trained, num_classes: int) -> ModuleSet:
        """``modules`` as a method returned them, checked against the model's maskable units; PluginError naming
        the method's plugin and the layer otherwise (not a size mismatch deep inside a metric)."""
        units = [(name, unit.num_units) for name, unit in maskable_units(trained.model.model)]
        problem = modules.misfit(units, num_classes) if isinstance(modules, ModuleSet) else (
            f"it returned a {type(modules).__name__}, not a ModuleSet")
        if problem is not None:
            plugin = self.ws.plugins.methods.owner.get(r.method.name, "?")
            raise PluginError(f"method {r.method.name} (plugin {plugin}): its modules do not fit {r.model}: {problem}")
        return modules

    def _activity_of(self, r: Resolved, trained: Trained) -> Callable[[], ActivityStats]:
        """A lazily computed activity pass of the trained model over the training split (once per model)."""
        def get() -> ActivityStats:
            key = f"{trained.sha256}-{r.recipe.activity_samples}-{r.recipe.activity_split}-{r.recipe.activity_augment}"
            if key not in self._activity:
                loader = self._activity_loader(r)
                self.ws.bars.start("stage", f"activity {r.method.name} {r.model}", len(loader))
                data = self.ws.data_of(r)
                self._activity[key] = collect_activity(trained.model.model, loader, data.num_classes,
                                                       r.recipe.activity_samples,
                                                       lambda: self.ws.bars.advance("stage"))
                self.ws.bars.hide("stage")
            return self._activity[key]
        return get

    def _activity_loader(self, r: Resolved) -> BatchLoader:
        """The training images the activity pass sees: the training split (or all training images), in
        order, augmented only when the recipe asks for it (the authors' scripts do)."""
        data = self.ws.data_of(r)
        images = data.train
        if r.recipe.activity_split == "train_full":
            images = TensorData(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))
        augment = r.recipe.train_augment(data.augment) if r.recipe.activity_augment else "none"
        return BatchLoader(images, r.recipe.eval_batch_size, mean=data.mean, std=data.std, device=self.ws.device,
                           augment=augment, seed=r.seed)
