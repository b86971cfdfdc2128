"""The reuse stage, per task: compose a module for the target classes, score it, attach a task head,
fine-tune it (model selection on the validation split), score it again, and measure its size,
FLOPs and latency against the standard model.

Model selection takes the composed module as it is among its candidates: when no fine-tuning epoch
beats it on the validation split (a fine-tuning run that collapsed, or diverged: a diverged epoch is
no candidate, its history row says ``diverged``), the module is reused as composed, scored on its
classes' logits, and its entry says ``finetune_kept: false``.

Each task is one cached step (its JSON entry and the fine-tuned module's weights), under the lock
of its reuse folder: concurrent runs share the work, a damaged module file is rebuilt.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.grid.resolve import Resolved
from bench.modular.ensemble import ClassModules
from bench.modular.extract import extract
from bench.modular.head import attach_head
from bench.modular.rounding import task_keep
from bench.pipeline import layout, metrics, store
from bench.pipeline.stages.base import Stage, key_of, stage_inputs
from bench.pipeline.stages.evaluate import EvaluateStage, Reference
from bench.pipeline.stages.modularize import FileCheckpoint
from bench.pipeline.stages.train import Trained, stage_values
from bench.pipeline.store import Stored
from bench.pipeline.training import Schedule
from bench.protocol.method import StageContext
from bench.protocol.modules import ModuleSet

log = logging.getLogger("bench")
SELECTION = "composed-or-best-epoch"  # the reuse key's model-selection rule (a change recomputes the tasks)
REUSE_FIELDS = ("finetune_epochs", "finetune_optimizer", "finetune_lr", "finetune_weight_decay",
                "finetune_horizon", "latency_batch")


@dataclass
class Reused:
    """A reused module: as composed, as kept by model selection, its test accuracy before and after
    fine-tuning, the fine-tuning history and the record fields of the selection."""

    composed: nn.Module
    module: nn.Module
    before: float
    after: float
    history: list[dict[str, float]] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    compose_seconds: float = 0.0


def mask_digest(modules: ModuleSet) -> str:
    """A checksum of the module masks and the method's tensors beside them (what a reused module is cut from)."""
    digest = hashlib.sha256(modules.masks.to(torch.uint8).numpy().tobytes())
    for name in sorted(modules.tensors):
        digest.update(name.encode() + modules.tensors[name].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def class_module_part(r: Resolved) -> dict[str, str]:
    """``{"one_class": rule}`` when ``r``'s method composes a one-class task its own way
    (``Method.one_class_compose``), else empty: a key part of what a class module is computed from."""
    rule = r.method.one_class_compose
    return {"one_class": rule} if rule else {}


def one_class_part(r: Resolved, classes: Sequence[int]) -> dict[str, str]:
    """``class_module_part`` for a task of one class, else empty."""
    return class_module_part(r) if len(classes) == 1 else {}


class ReuseStage(Stage):
    """Composes, fine-tunes and measures the module of one task (cached per task)."""

    def __init__(self, ws: Any, evaluate: EvaluateStage) -> None:
        super().__init__(ws)
        self.evaluate = evaluate

    def settings(self, r: Resolved, modules_settings: str) -> str:
        """Hash of the settings that determine a reused module (names the reuse folder)."""
        return key_of(modules=modules_settings, hparams=stage_values(r.hparams, "compose"),
                      recipe={k: getattr(r.recipe, k) for k in REUSE_FIELDS}, precision=self.ws.precision(r))

    def finetunes(self, r: Resolved) -> bool:
        """Whether ``r``'s reused modules get a task head and fine-tuning."""
        return r.method.finetune and r.recipe.finetune_epochs > 0

    def run(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, directory: Path,
            classes: tuple[int, ...], ref: Reference) -> dict[str, Any]:
        """The task's entry for the record (classes, accuracies, sizes, ratios, the module file)."""
        stored = self.stored(r, trained, modules, ctx, directory, classes, ref)
        return {**stored.info, "module_sha256": stored.sha256}

    def stored(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext, directory: Path,
               classes: tuple[int, ...], ref: Reference) -> Stored:
        """What the store holds for the task: its entry (``info``) and the module's weights (``tensors``)."""
        parts = self.parts(r, directory, trained.sha256, mask_digest(modules), ref.trained.sha256, classes)
        return self.cached(layout.task_file(directory, classes), parts,
                           lambda: self._compute(r, trained, modules, ctx, classes, ref), lambda stored: stored)

    def parts(self, r: Resolved, directory: Path, model_sha: str, masks: str, standard_sha: str,
              classes: tuple[int, ...]) -> dict[str, Any]:
        """What determines a task's reused module: the reuse folder's settings, the trained model, its module
        masks (``mask_digest``), the standard model, the classes, the selection rule and the data's content."""
        return {"folder": directory.name, "model": model_sha, "modules": masks, "standard": standard_sha,
                "classes": list(classes), "selection": SELECTION, **one_class_part(r, classes),
                **self.data_part(r)}

    def changed(self, r: Resolved, directory: Path, model_sha: str, masks: str, standard_sha: str,
                classes: tuple[int, ...]) -> str | None:
        """None when the task's stored entry was computed from these inputs (or is not there); else what changed
        ('from other inputs (the trained model changed)')."""
        stored, inputs = store.stored_key(layout.task_file(directory, classes))
        parts = self.parts(r, directory, model_sha, masks, standard_sha, classes)
        if stored is None or stored == key_of(**parts):
            return None
        return store.changed_inputs(inputs, stage_inputs(**parts))

    def module(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext,
               classes: tuple[int, ...], headed: bool = True) -> nn.Module:
        """The composed module of a task, with its task head (untrained) when the method fine-tunes and
        ``headed`` (the stored entry's ``finetune_kept``)."""
        module = self.composed(r, trained, modules, ctx, classes)
        if self.finetunes(r) and headed:
            module = attach_head(module, ctx.num_classes, len(classes))
        return module

    def composed(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext,
                 classes: tuple[int, ...]) -> nn.Module:
        """The method's composed module on the device; a search inside ``compose`` (SeaM's, per task) keeps its
        state in a checkpoint of the task's own, so a killed run resumes it, ``bench export`` reads it, and the
        scenarios' class modules (tasks of one class) share it."""
        key = key_of(model=trained.sha256, modules=mask_digest(modules), classes=list(classes),
                     hparams=stage_values(r.hparams, "compose"), precision=self.ws.precision(r),
                     **one_class_part(r, classes))
        checkpoint = FileCheckpoint(layout.compose_search_file(trained.directory, ctx.threshold, key))
        torch.manual_seed(r.seed)
        composed = r.method.compose(dataclasses.replace(ctx, checkpoint=checkpoint), trained.model, modules, classes)
        return composed.to(self.ws.device)

    def reused(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext,
               classes: tuple[int, ...]) -> Reused:
        """The task's module composed from ``modules``, scored, fine-tuned (or kept as composed: model
        selection) and scored again, as every reused module is (a control's too)."""
        task = ctx.data.task(classes)
        start = time.perf_counter()
        composed = self.composed(r, trained, modules, ctx, classes)
        compose_seconds = time.perf_counter() - start
        before = metrics.accuracy(composed, self.ws.loader(r, "test", task), columns=classes)
        reused = Reused(composed, composed, before, before, compose_seconds=compose_seconds)
        if self.finetunes(r):
            reused.module, reused.history, reused.selection = self._finetuned_or_composed(
                r, composed, task, classes, ctx.num_classes)
            reused.after = metrics.accuracy(reused.module, self.ws.loader(r, "test", task),
                                            columns=None if reused.selection["finetune_kept"] else classes)
        return reused

    def _compute(self, r: Resolved, trained: Trained, modules: ModuleSet, ctx: StageContext,
                 classes: tuple[int, ...], ref: Reference) -> Stored:
        start = time.perf_counter()
        reused = self.reused(r, trained, modules, ctx, classes)
        module = reused.module
        kept = modules.masks[list(classes)]
        entry = {"classes": list(classes), "module_acc": reused.after, "module_acc_before_finetune": reused.before,
                 **reused.selection, "standard_acc": self.evaluate.standard_task_accuracy(ref, classes),
                 "retention": metrics.retention(kept.any(dim=0)), **self._rounded(r, modules, classes),
                 "retention_sum": float(kept.sum()) / modules.masks.shape[1],
                 **self.size(module, ref), **self._merged_size(trained, modules, reused.composed, classes, ref),
                 **metrics.latency_ratios(module, ref.trained.model.model, self.ws.precision(r),
                                          r.recipe.throughput_batch(self.ws.device.type)),
                 "finetune_history": reused.history, "compose_seconds": reused.compose_seconds,
                 "seconds": time.perf_counter() - start}
        self.ws.emit("stage_end", r, {"stage": "reuse", **entry})
        return Stored(entry, {k: v.detach().cpu() for k, v in module.state_dict().items()})

    def _finetuned_or_composed(self, r: Resolved, composed: nn.Module, task: Any, classes: tuple[int, ...],
                               num_classes: int) -> tuple[nn.Module, list[dict[str, float]], dict[str, Any]]:
        """The fine-tuned module (its best validation epoch), or the composed one when it scores higher on the
        validation split; the fine-tuning history; the record fields of the choice."""
        composed_val = metrics.accuracy(composed, self.ws.loader(r, "val", task), columns=classes)
        module = attach_head(copy.deepcopy(composed), num_classes, len(classes))
        history = self._finetune(r, module, task)
        best_val = max((row["val_acc"] for row in history if "val_acc" in row), default=-1.0)
        kept = best_val >= composed_val
        for row in history:
            if "diverged" in row:
                log.warning("%s %s %s: fine-tuning task %s diverged (%s); the %s is kept", r.method.name, r.model,
                            r.dataset, ",".join(map(str, classes)), row["diverged"],
                            "best epoch before it" if kept else "module as composed")
        return (module if kept else composed), history, {"finetune_kept": kept, "val_acc_composed": composed_val}

    def _finetune(self, r: Resolved, module: nn.Module, task: Any) -> list[dict[str, float]]:
        recipe = r.recipe
        schedule = Schedule(recipe.finetune_epochs, recipe.finetune_lr, "cosine", horizon=recipe.finetune_horizon,
                            lr_setting="finetune_lr")
        return self.ws.fit(r, module, schedule, "finetune", data=task, recipe=recipe.finetuning(), select_best=True)

    @staticmethod
    def _rounded(r: Resolved, modules: ModuleSet, classes: tuple[int, ...]) -> dict[str, float]:
        """With a channel multiple, the share of units the rounded module keeps (its own retention)."""
        multiple = getattr(r.hparams, "channel_multiple", 1)
        return {} if multiple == 1 else {"retention_rounded": metrics.retention(task_keep(modules, classes, multiple))}

    @staticmethod
    def size(module: nn.Module, ref: Reference) -> dict[str, Any]:
        """Parameters and FLOPs against the standard model's; Linear layers alone too (how the NeMo
        authors count a ViT's weights). A module with unstructured weight masks counts its kept weights and
        their multiply-adds, says so (``sparsity``) and gives its dense FLOPs beside them."""
        params, counts = metrics.count_params(module), metrics.flop_counts(module)
        linear = metrics.count_linear_params(ref.trained.model.model)
        return {"params": params, "weight_retention": params / ref.params, "flops": counts[0],
                "flops_ratio": counts[0] / ref.flops,
                "weight_retention_linear": metrics.count_linear_params(module) / linear if linear else 1.0,
                **metrics.sparsity_figures(module, counts, ref.flops)}

    def _merged_size(self, trained: Trained, modules: ModuleSet, composed: nn.Module, classes: tuple[int, ...],
                     ref: Reference) -> dict[str, Any]:
        """For a task composed class by class: the merged form's size (kernels shared by modules computed once)."""
        if not isinstance(composed, ClassModules):
            return {}
        merged = extract(trained.model.model, modules.target(classes))
        size = self.size(merged, ref)
        return {f"{name}_merged": size[name] for name in ("params", "weight_retention", "flops", "flops_ratio")}
