"""The trained model's own numbers, and the standard model every other method is measured against.

``model_metrics``: test accuracy, parameters and FLOPs of a trained model (cached beside it);
``reference``: the standard model of a cell, with its size; ``standard_task_accuracy``: the
standard model on a task, logits restricted to the target classes, no fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.grid.resolve import Resolved
from bench.pipeline import metrics
from bench.pipeline.stages.base import Stage
from bench.pipeline.stages.train import Trained, TrainStage
from bench.pipeline.store import Stored, classes_label


@dataclass
class Reference:
    """The standard model a cell is measured against: its resolved cell, trained model, accuracy, size and FLOPs."""

    cell: Resolved
    trained: Trained
    test_acc: float
    params: int
    flops: int


class EvaluateStage(Stage):
    """Scores trained models on the test split (cached per model checksum)."""

    def __init__(self, ws: Any, train: TrainStage) -> None:
        super().__init__(ws)
        self.train = train
        self._references: dict[Path, Reference] = {}

    def model_metrics(self, r: Resolved, trained: Trained) -> dict[str, Any]:
        """Test accuracy, parameters and FLOPs of the model as trained, and its training time."""
        def compute() -> Stored:
            model = trained.model.model
            return Stored({"test_acc": metrics.accuracy(model, self.ws.loader(r, "test")),
                           "params": metrics.count_params(model), "flops": metrics.count_flops(model)})

        parts = {"model": trained.sha256, **self.data_part(r)}
        values = self.cached(trained.directory / "metrics.json", parts, compute, lambda stored: dict(stored.info))
        return {**values, "train_seconds": trained.seconds}

    def reference(self, r: Resolved) -> Reference:
        """The standard model of ``r``'s model, data set, seed and recipe values, with its size and FLOPs."""
        standard = self.ws.resolver.standard_of(r)
        directory = self.train.directory(standard)
        if directory not in self._references:  # loaded and scored once per process
            trained = self.train.run(standard)
            numbers = self.model_metrics(standard, trained)
            self._references[directory] = Reference(standard, trained, numbers["test_acc"], numbers["params"],
                                                    numbers["flops"])
        return self._references[directory]

    def standard_task_accuracy(self, ref: Reference, classes: tuple[int, ...]) -> float:
        """The standard model on a task: its logits restricted to the target classes, argmax."""
        r = ref.cell

        def compute() -> Stored:
            task = self.ws.data_of(r).task(classes)
            model = ref.trained.model.model
            return Stored({"acc": metrics.accuracy(model, self.ws.loader(r, "test", task), columns=classes)})

        path = ref.trained.directory / f"standard-{classes_label(classes)}.json"
        parts = {"model": ref.trained.sha256, "classes": list(classes), **self.data_part(r)}
        return self.cached(path, parts, compute,
                           lambda stored: stored.info["acc"])
