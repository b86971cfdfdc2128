"""The controls of a reused module, per task and kind: as many units per layer, chosen at random or by weight
magnitude from the same trained model (``bench.modular.controls``), composed, scored, fine-tuned and
selected exactly as the module they shadow (``ReuseStage.reused``).

Each control is one cached step beside its task (``controls/<classes>-<kind>.json``, holding the control's
masks of the target classes), keyed by the task's own key, the control's kind and rule: a re-run that adds
a control computes that control only. A control identical to its module (the standard method's, whose
module is the whole model) is not computed: its figures are the module's, marked ``same_as_module``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench.grid.resolve import Resolved
from bench.modular.controls import control_modules, matched_masks
from bench.pipeline import layout
from bench.pipeline.stages.base import Stage
from bench.pipeline.stages.evaluate import Reference
from bench.pipeline.stages.reuse import ReuseStage, mask_digest
from bench.pipeline.stages.train import Trained
from bench.pipeline.store import Stored
from bench.protocol.method import StageContext
from bench.protocol.modules import ModuleSet

CONTROL_RULE = "matched-per-layer-v1"  # how a control is drawn (a change recomputes the controls)
SHARED_FIGURES = ("module_acc", "module_acc_before_finetune", "finetune_kept", "params", "weight_retention",
                  "flops_ratio")


class ControlStage(Stage):
    """Computes (or reads) the controls of one task's reused module."""

    def __init__(self, ws: Any, reuse: ReuseStage) -> None:
        super().__init__(ws)
        self.reuse = reuse

    def run(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, directory: Path,
            classes: tuple[int, ...], ref: Reference, entry: dict[str, Any],
            kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The figures of each control of ``kinds`` for the task whose record entry is ``entry``."""
        kept = matched_masks(modules, classes, r.method.per_class_modules,
                             getattr(r.hparams, "channel_multiple", 1))
        task = self.reuse.parts(r, directory, trained.sha256, mask_digest(modules), ref.trained.sha256, classes)
        return {kind: self._control(r, trained, modules, ctx, directory, classes, ref, entry, kept, kind, task)
                for kind in kinds}

    def _control(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, directory: Path,
                 classes: tuple[int, ...], ref: Reference, entry: dict[str, Any], kept: dict[int, torch.Tensor],
                 kind: str, task: dict[str, Any]) -> dict[str, Any]:
        control = control_modules(modules, kept, kind, trained.model.model, r.seed)
        if all(torch.equal(control.masks[c], modules.masks[c]) for c in classes):
            return {**{k: entry[k] for k in SHARED_FIGURES if k in entry}, "same_as_module": True}

        def compute() -> Stored:
            reused = self.reuse.reused(r, trained, control, ctx, classes)
            size = self.reuse.size(reused.module, ref)
            figures = {"module_acc": reused.after, "module_acc_before_finetune": reused.before,
                       **{k: v for k, v in reused.selection.items() if k == "finetune_kept"},
                       **{k: size[k] for k in ("params", "weight_retention", "flops_ratio")}}
            self.ws.emit("stage_end", r, {"stage": "control", "control": kind, "classes": list(classes), **figures})
            return Stored(figures, {"masks": control.masks[list(classes)].clone()})

        parts = {**task, "control": kind, "rule": CONTROL_RULE, "seed": r.seed}
        return self.cached(layout.control_file(directory, classes, kind), parts, compute,
                           lambda stored: dict(stored.info))
