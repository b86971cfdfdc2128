"""The patching scenario, per patched class: the weak model, and the weak model patched with the strong
model's module of that class by both strategies (``bench.modular.patching``).

Each class is one cached step in the record's folder, keyed by the strong model, its module masks,
the weak model and the settings. Its figures: the weak and the patched model's test accuracy, and
the patched class's precision, recall and F1 before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench.data import BatchLoader, TensorData
from bench.data.tensors import derive_seed
from bench.grid.resolve import Resolved
from bench.grid.scenarios import PatchSettings
from bench.modular.patching import CALIBRATION_INPUTS, fit_calibration, joint_outputs, replace_column
from bench.pipeline import layout, metrics
from bench.pipeline.scenarios.outputs import ClassOutputs, ClassOutputsStage
from bench.pipeline.scenarios.weak import Weak, WeakStage
from bench.pipeline.stages.base import Stage
from bench.pipeline.stages.reuse import class_module_part, mask_digest
from bench.pipeline.stages.train import Trained, stage_values
from bench.pipeline.store import Stored
from bench.protocol.method import StageContext
from bench.protocol.modules import ModuleSet

STRATEGIES = ("replace", "calibrate")  # CNNSplitter / GradSplitter's column replacement; MODA's calibration layer


class PatchStage(Stage):
    """Patches the weak model class by class with a cell's modules, used as composed (cached per class)."""

    def __init__(self, ws: Any, outputs: ClassOutputsStage, weak: WeakStage) -> None:
        super().__init__(ws)
        self.outputs = outputs
        self.weak = weak
        self._weak_logits: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def run(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, modules_settings: str,
            directory: Path, classes: tuple[int, ...], settings: PatchSettings) -> dict[str, Any]:
        """The record's ``patching`` section: the settings, the weak model, and every class's entries."""
        weak = self.weak.run(r, settings)
        entries = [entry for label in classes
                   for entry in self.patch_class(r, trained, modules, ctx, modules_settings, directory, label, weak,
                                                 settings)]
        inputs = patch_inputs(r, trained.sha256, mask_digest(modules))
        return {"settings": settings.values(), "inputs": inputs, "weak": weak.summary(), "entries": entries}

    def patch_class(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, modules_settings: str,
                    directory: Path, label: int, weak: Weak, settings: PatchSettings) -> list[dict[str, Any]]:
        """The patched class's entries, one per strategy."""
        parts = dict(model=trained.sha256, modules=mask_digest(modules), weak=weak.trained.sha256, label=label,
                     settings=settings.values(), hparams=stage_values(r.hparams, "compose"),
                     batch=r.recipe.batch_size, strategies=STRATEGIES, calibration=CALIBRATION_INPUTS,
                     **class_module_part(r), **self.data_part(r))

        def compute() -> Stored:
            outputs = self.outputs.run(r, trained, modules, ctx, modules_settings, label)
            module = self.outputs.module(r, trained, modules, ctx, label)
            calibration, _ = metrics.outputs_of(module, self._loader(r, weak.images), column=label)
            return Stored({"entries": self._entries(r, weak, outputs, calibration, settings)})

        return self.cached(layout.patch_file(directory, label), parts, compute, lambda s: list(s.info["entries"]))

    def _entries(self, r: Resolved, weak: Weak, outputs: ClassOutputs, calibration: torch.Tensor,
                 settings: PatchSettings) -> list[dict[str, Any]]:
        """Weak and patched figures of class ``outputs.label`` for each strategy."""
        label = outputs.label
        test_logits, images_logits = self._weak_outputs(r, weak)
        labels = self.ws.data_of(r).test.y
        joint = joint_outputs(images_logits, calibration, label)
        layer = fit_calibration(joint, weak.images.y, settings.calibration_epochs, settings.calibration_lr,
                                r.recipe.batch_size, derive_seed("calibrate", r.seed, label))
        patched = {"replace": replace_column(test_logits, outputs.test, label, outputs.low, outputs.high),
                   "calibrate": layer(joint_outputs(test_logits, outputs.test, label))}
        before = metrics.class_scores(test_logits.argmax(1), labels, label)
        weak_acc = float((test_logits.argmax(1) == labels).double().mean())
        entries = []
        for strategy in STRATEGIES:
            predictions = patched[strategy].argmax(1)
            entries.append({"label": label, "strategy": strategy, "weak_acc": weak_acc,
                            "acc": float((predictions == labels).double().mean()),
                            **{f"weak_{name}": value for name, value in before.items()},
                            **metrics.class_scores(predictions, labels, label)})
        return entries

    def _weak_outputs(self, r: Resolved, weak: Weak) -> tuple[torch.Tensor, torch.Tensor]:
        """The weak model's logits on the test images and on its own images (once per weak model and data)."""
        key = (weak.trained.sha256, str(r.dataset))
        if key not in self._weak_logits:
            model = weak.trained.model.model
            test, _ = metrics.outputs_of(model, self.ws.loader(r, "test"))
            own, _ = metrics.outputs_of(model, self._loader(r, weak.images))
            self._weak_logits[key] = (test, own)
        return self._weak_logits[key]

    def _loader(self, r: Resolved, images: TensorData) -> BatchLoader:
        data = self.ws.data_of(r)
        return BatchLoader(images, r.recipe.eval_batch_size, mean=data.mean, std=data.std, device=self.ws.device)


def patched_classes(tasks: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """The classes the scenario patches: every class of the grid's tasks, in their order."""
    return tuple(dict.fromkeys(label for task in tasks for label in task))


def patch_inputs(r: Resolved, model_sha: str, masks: str) -> dict[str, str]:
    """What a record's patched classes are computed from: the trained model, its module masks (digest) and the
    method's rule for a class module (``class_module_part``); earlier ones from other inputs are dropped."""
    return {"model": model_sha, "modules": masks, **class_module_part(r)}


def patching_covers(record: dict[str, Any], settings: PatchSettings, classes: tuple[int, ...],
                    inputs: dict[str, str]) -> bool:
    """Whether ``record`` holds every strategy's entry of ``classes`` patched with ``settings`` from ``inputs``."""
    patching = record.get("patching")
    if not patching or patching["settings"] != settings.values() or patching.get("inputs") != inputs:
        return False
    done = {(entry["label"], entry["strategy"]) for entry in patching["entries"]}
    return all((label, strategy) in done for label in classes for strategy in STRATEGIES)
