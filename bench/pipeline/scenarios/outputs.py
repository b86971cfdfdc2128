"""One class module's outputs: the shared input of patching and of composing modules across models.

The module of class c is the method's composition for the task (c,), used as composed (no head,
no fine-tuning); its vote is its logit of class c. The stage keeps that logit on every validation
and test image, and the range it takes on the validation images of class c (what min-max
normalises it by), cached per trained model, module masks and class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.grid.resolve import Resolved
from bench.pipeline import layout, metrics
from bench.pipeline.stages.base import Stage, key_of
from bench.pipeline.stages.reuse import ReuseStage, class_module_part, mask_digest
from bench.pipeline.stages.train import Trained, stage_values
from bench.pipeline.store import Stored
from bench.protocol.method import StageContext
from bench.protocol.modules import ModuleSet


@dataclass
class ClassOutputs:
    """Class ``label``'s module: its logit of the class on the validation and test images (CPU), the range
    on the validation images of the class, and how well it ranks them above the others (ROC AUC)."""

    label: int
    val: torch.Tensor  # (validation images,)
    test: torch.Tensor  # (test images,)
    low: float
    high: float
    val_auc: float
    sha256: str  # the stored outputs' checksum (what a composition is keyed by)


class ClassOutputsStage(Stage):
    """Composes a single-class module and runs it over the validation and test images (cached per class)."""

    def __init__(self, ws: Any, reuse: ReuseStage) -> None:
        super().__init__(ws)
        self.reuse = reuse

    def settings(self, r: Resolved, modules_settings: str) -> str:
        """Hash of the settings that determine a class module (names the stage's folder)."""
        return key_of(modules=modules_settings, hparams=stage_values(r.hparams, "compose"))

    def module(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, label: int) -> nn.Module:
        """The module of class ``label``: the method's composition for the task ``(label,)`` as the reuse stage
        composes it (seeded alike; a search inside ``compose`` in that task's own checkpoint)."""
        return self.reuse.composed(r, trained, modules, ctx, (label,))

    def run(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, modules_settings: str,
            label: int) -> ClassOutputs:
        """Class ``label``'s module outputs (computed once per trained model, masks and class)."""
        settings = self.settings(r, modules_settings)
        path = layout.class_outputs_file(trained.directory, ctx.threshold, settings, label)
        parts = dict(settings=settings, model=trained.sha256, modules=mask_digest(modules), label=label,
                     **class_module_part(r), **self.data_part(r))

        def restore(stored: Stored) -> ClassOutputs:
            info = stored.info
            return ClassOutputs(label, stored.tensors["val"].cpu(), stored.tensors["test"].cpu(), info["low"],
                                info["high"], info["val_auc"], stored.sha256)

        return self.cached(path, parts, lambda: self._compute(r, trained, modules, ctx, label), restore)

    def _compute(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, label: int) -> Stored:
        module = self.module(r, trained, modules, ctx, label)
        val, val_labels = metrics.outputs_of(module, self.ws.loader(r, "val"), column=label)
        test, _ = metrics.outputs_of(module, self.ws.loader(r, "test"), column=label)
        own = val[val_labels == label]
        info: dict[str, Any] = {"label": label, "low": float(own.min()), "high": float(own.max()),
                                "val_auc": metrics.roc_auc(val, val_labels == label)}
        return Stored(info, {"val": val, "test": test})
