"""The weak model of the patching scenario: the cell's architecture trained briefly on a tenth of the data.

One weak model serves every method of a model, data set and seed: it is keyed by the standard
model's training key (architecture, data, seed, recipe, precision) and the patch settings that shape
it (``fraction``, ``epochs``, ``without``). It trains with plain cross-entropy and the standard
recipe's optimizer on a stratified, seeded ``fraction`` of the training split, minus the class
``without`` when one is given; those images, that class included, are also what MODA's calibration
layer trains on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import torch

from bench.data import TensorData
from bench.data.tensors import stratified_split
from bench.grid.resolve import Resolved
from bench.grid.scenarios import PatchSettings
from bench.pipeline import layout, metrics
from bench.pipeline.stages.base import Stage, key_of
from bench.pipeline.stages.train import Trained, TrainStage
from bench.pipeline.store import Stored
from bench.pipeline.training import Schedule
from bench.protocol.method import TrainedModel

log = logging.getLogger("bench")
WEAK_FIELDS = ("fraction", "epochs", "without")  # the patch settings that shape the weak model


@dataclass
class Weak:
    """The weak model, its test accuracy, and the images it was given (the calibration images)."""

    trained: Trained
    test_acc: float
    images: TensorData
    trained_on: int  # images it trained on (``images`` less the class withheld)

    def summary(self) -> dict[str, float | int]:
        """What the record says of the weak model."""
        return {"test_acc": self.test_acc, "images": self.trained_on, "seconds": self.trained.seconds}


class WeakStage(Stage):
    """Trains (or loads) the weak model of a cell's model, data set and seed."""

    def __init__(self, ws: object, train: TrainStage) -> None:
        super().__init__(ws)
        self.train = train

    def run(self, r: Resolved, settings: PatchSettings) -> Weak:
        """The weak model of ``r``'s model, data set and seed (``r`` may be any method's cell)."""
        standard = self.ws.resolver.standard_of(r)
        shape = {name: getattr(settings, name) for name in WEAK_FIELDS}
        parts = {"standard": self.train.key(standard), "weak": shape}  # the standard's key holds the data's content
        key = key_of(**parts)
        directory = layout.weak_dir(self.ws.out / r.dataset.slug / r.model.slug, key)
        images = self.images(standard, settings)

        def restore(stored: Stored) -> Weak:
            model = self._architecture(standard)
            model.load_state_dict(stored.tensors)
            trained = Trained(TrainedModel(model, stored.info["history"]), stored.info["seconds"], directory,
                              stored.sha256)
            return Weak(trained, stored.info["test_acc"], images, stored.info["images"])

        return self.cached(directory / "model.json", parts, lambda: self._train(standard, settings, images), restore)

    def images(self, standard: Resolved, settings: PatchSettings) -> TensorData:
        """The weak model's share of the training split: ``fraction`` of every class, drawn from the seed."""
        return stratified_split(self.ws.data_of(standard).train, settings.fraction, standard.seed)[1]

    def _train(self, standard: Resolved, settings: PatchSettings, images: TensorData) -> Stored:
        log.info("training the weak model of %s on %s (seed %d): %d images, %d epochs", standard.model,
                 standard.dataset, standard.seed, len(images), settings.epochs)
        kept = images if settings.without is None else images.take(images.y != settings.without)
        data = dataclasses.replace(self.ws.data_of(standard), train=kept)
        model = self._architecture(standard)
        start = time.perf_counter()
        schedule = Schedule(settings.epochs, standard.recipe.lr, standard.recipe.schedule)
        history = self.ws.fit(standard, model, schedule, "weak", data=data)
        seconds = time.perf_counter() - start
        test_acc = metrics.accuracy(model, self.ws.loader(standard, "test"))
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return Stored({"seconds": seconds, "history": history, "test_acc": test_acc, "images": len(kept)}, state)

    def _architecture(self, standard: Resolved) -> torch.nn.Module:
        torch.manual_seed(standard.seed)
        data = self.ws.data_of(standard)
        return standard.spec.build(data.num_classes, **standard.model.kwargs).to(self.ws.device)
