"""The train stage: a method trains its form of the model (or takes the one it starts from).

Its key hashes everything that determines the weights: method, training hyperparameters, model,
data set, seed, the training fields of the recipe, the precision it runs in on this device, and
the keys of its dependencies (a distilled model's teacher, a post-training method's start).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import DataNotFound, UsageError
from bench.grid.resolve import Resolved
from bench.pipeline import store
from bench.pipeline.env import device_name
from bench.pipeline.stages.base import Stage, key_of, stage_inputs
from bench.pipeline.store import Stored
from bench.pipeline.training import Schedule, cross_entropy_loss, distillation_loss
from bench.protocol.method import TrainContext, TrainedModel

log = logging.getLogger("bench")

# Recipe fields that do not change the trained weights (they belong to later stages' keys).
NOT_TRAINING = ("finetune_epochs", "finetune_optimizer", "finetune_lr", "finetune_weight_decay",
                "finetune_horizon", "latency_batch", "activity_split", "activity_augment", "activity_samples",
                "eval_batch_size", "precision")


def stage_values(hparams: Any, stage: str) -> dict[str, Any]:
    """Hyperparameters that affect ``stage`` ('train', 'modularize', 'compose').

    A field declares its stage with ``field(metadata={"stage": "compose"})``; the default is 'train'.
    """
    if not dataclasses.is_dataclass(hparams):
        return {}
    return {f.name: getattr(hparams, f.name) for f in dataclasses.fields(hparams)
            if f.metadata.get("stage", "train") == stage}


def loss_settings(r: Resolved) -> tuple[str, ...]:
    """The method's training hyperparameters as ``nemo.tau=0.2`` (a divergence message names them)."""
    values = stage_values(r.hparams, "train").items()
    return tuple(f"{r.method.name}.{key}={value}" for key, value in values if value is not None)


@dataclass
class Trained:
    """A trained model, its history and timing, where it is stored and its file's checksum.

    ``device`` names where it was trained (None in a store written before modbench kept it);
    ``imported``: its weights came from ``bench import`` (no training time).
    """

    model: TrainedModel
    seconds: float
    directory: Path
    sha256: str
    device: str | None = None
    imported: bool = False


class TrainStage(Stage):
    """Loads a cell's trained model when its files verify; trains it (dependencies first) otherwise."""

    def settings_parts(self, r: Resolved) -> dict[str, Any]:
        """The settings that determine the trained weights (the data's content aside)."""
        teacher, start = self.ws.resolver.teacher_of(r), self.ws.resolver.start_of(r)
        recipe = {k: v for k, v in dataclasses.asdict(r.recipe).items() if k not in NOT_TRAINING}
        return dict(method=r.method.name, hparams=stage_values(r.hparams, "train"), model=str(r.model),
                    dataset=str(r.dataset), seed=r.seed, recipe=recipe, precision=self.ws.precision(r),
                    teacher=self.settings_key(teacher) if teacher else None,
                    start=self.settings_key(start) if start else None)

    def settings_key(self, r: Resolved) -> str:
        """Hash of the settings that determine the trained weights: the model's folder name."""
        return key_of(**self.settings_parts(r))

    def parts(self, r: Resolved) -> dict[str, Any]:
        """Everything that determines the trained weights: the settings and the data's content."""
        return {**self.settings_parts(r), **self.data_part(r)}

    def key(self, r: Resolved) -> str:
        """Hash of everything that determines the trained weights (``settings_key`` for data named by its options)."""
        return key_of(**self.parts(r))

    def directory(self, r: Resolved) -> Path:
        """``runs/<dataset>/<model>/<method>/<settings-key>``: known before any data is read."""
        return self.ws.out / r.dataset.slug / r.model.slug / r.method.name / self.settings_key(r)

    def run(self, r: Resolved) -> Trained:
        """The trained model of ``r``."""
        directory = self.directory(r)

        def restore(stored: Stored) -> Trained:
            model = self._architecture(r)
            model.load_state_dict(stored.tensors)
            info = stored.info
            return Trained(TrainedModel(model, info["history"]), info["seconds"], directory, stored.sha256,
                           info.get("device"), "imported" in info)

        return self.cached(directory / "model.json", self.parts(r), lambda: self._train(r), restore)

    def stored(self, r: Resolved) -> bool:
        """Whether ``r``'s trained model is in the store under its current key (its checksum is not read)."""
        return self.current_sha(r) is not None

    def current_sha(self, r: Resolved) -> str | None:
        """The checksum of ``r``'s trained model when the store holds it under its current key (the file is not
        read); None otherwise, or when the data's files are not there."""
        entry = store.read_json(self.directory(r) / "model.json")
        try:
            current = isinstance(entry, dict) and entry.get("key") == self.key(r)
        except DataNotFound:
            return None
        return entry.get("sha256") if current else None

    def store(self, r: Resolved, state: dict[str, torch.Tensor], imported: dict[str, Any]) -> Path:
        """Store weights trained elsewhere as the train stage of ``r`` (``bench import``); returns the folder.

        The weights must load strictly into the architecture ``r``'s method trains; a later ``bench run``
        of the same cell then modularizes and evaluates them without training.
        """
        model = self._architecture(r)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "mismatch"
            raise UsageError(f"these weights do not fit what method {r.method.name} trains on {r.model}: "
                             f"{first}") from None
        directory = self.directory(r)
        stored = Stored({"seconds": 0.0, "history": [], "imported": imported},
                        {k: v.detach().cpu() for k, v in model.state_dict().items()})
        store.put(directory / "model.json", self.key(r), stored, stage_inputs(**self.parts(r)))
        return directory

    def _train(self, r: Resolved) -> Stored:
        log.info("training %s on %s (%s, seed %d)", r.method.name, r.model, r.dataset, r.seed)
        torch.manual_seed(r.seed)
        ctx = self._context(r, for_training=True)
        ctx.model = r.method.build(ctx).to(self.ws.device)
        start = time.perf_counter()
        trained = r.method.train(ctx)
        seconds = time.perf_counter() - start
        state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        self.ws.emit("stage_end", r, {"stage": "train", "seconds": seconds, "history": trained.history})
        return Stored({"seconds": seconds, "history": trained.history, "device": device_name(self.ws.device)}, state)

    def _architecture(self, r: Resolved) -> nn.Module:
        torch.manual_seed(r.seed)
        return r.method.build(self._context(r, for_training=False)).to(self.ws.device)

    def _context(self, r: Resolved, for_training: bool) -> TrainContext:
        """What ``build`` and ``train`` receive; dependencies are trained (or loaded) only for training."""
        data = self.ws.data_of(r)
        device = self.ws.device

        def new_model() -> nn.Module:
            return r.spec.build(data.num_classes, **r.model.kwargs).to(device)

        def fit(model: nn.Module, loss_fn: Any = None, groups: list[dict] | None = None) -> list[dict[str, float]]:
            schedule = Schedule(r.recipe.epochs, r.recipe.lr, r.recipe.schedule, r.recipe.warmup_epochs,
                                loss_settings=loss_settings(r))
            return self.ws.fit(r, model, schedule, "train", loss_fn=loss_fn, groups=groups)

        task_loss, start_model = cross_entropy_loss, None
        teacher, start = self.ws.resolver.teacher_of(r), self.ws.resolver.start_of(r)
        if teacher is not None and for_training:
            task_loss = distillation_loss(self.run(teacher).model.model.eval().requires_grad_(False))
        if start is not None and for_training:
            start_weights = self.run(start).model.model
            start_model = lambda: copy.deepcopy(start_weights)  # noqa: E731
        return TrainContext(r.spec, r.model.kwargs, data, device, r.recipe, r.hparams, r.seed, fit=fit,
                            task_loss=task_loss, new_model=new_model, start_model=start_model)
