"""Modules composed across models (GradSplitter's "more accurate model"): after a grid, for every method,
data set, model family, setting variant and threshold with two or more trained models (seeds, or
models of the family), per class the module that ranks its class highest on the validation images
(ROC AUC; the first member on ties), composed into one classifier and scored on the test images.

Votes are each module's logit of its class, standardised by its mean and deviation on the
validation images (``bench.modular.votes``). A ``composition.json`` per member set is written beside
the data set's runs; it names the content it came from (``key``) and is recomputed when that changes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError, CorruptArtifact
from bench.grid.config import CellConfig
from bench.grid.resolve import Resolved
from bench.modular.votes import best_members, standardised_votes
from bench.pipeline import layout, store
from bench.pipeline.env import environment
from bench.pipeline.scenarios.outputs import ClassOutputs
from bench.pipeline.stages.base import key_of
from bench.record import RECORD_SCHEMA, Composition, Record, as_composition, read_composition, read_record

log = logging.getLogger("bench")
SELECTION = "val_auc"  # per class, the module with the highest ROC AUC for its class on the validation images
VOTES = "standardised"  # how a vote is put on the common scale (a change recomputes the compositions)


class CompositionStep:
    """Composes the class modules of a grid's trained models across models (``runner``: a ``CellRunner``)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.ws = runner.ws

    def run(self, cells: list[CellConfig]) -> list[Composition]:
        """Every composition of ``cells`` (groups of two or more members with valid records)."""
        compositions = []
        for members in self.groups(cells).values():
            for threshold in members[0].grid.thresholds:
                found = [(r, record) for r, record in (self._member(cell, threshold) for cell in members) if record]
                if len(found) < 2:
                    continue
                try:
                    compositions.append(self.compose(found, threshold))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # a failing composition is reported and the others go on
                    message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                    log.error("composing %s across models failed: %s", members[0].method, message)
                    log.debug("traceback", exc_info=True)
        return compositions

    def groups(self, cells: list[CellConfig]) -> dict[tuple, list[CellConfig]]:
        """Recorded cells by method, data set, model family and setting variant (models and seeds differ)."""
        groups: dict[tuple, list[CellConfig]] = defaultdict(list)
        for cell in cells:
            if cell.record:
                r = self.runner.resolve(cell)
                groups[(r.method.name, str(r.dataset), r.spec.family, cell.overrides)].append(cell)
        return groups

    def _member(self, cell: CellConfig, threshold: float) -> tuple[Resolved, Record | None]:
        r = self.runner.resolve(cell)
        try:
            record = read_record(self.runner.record_dir(r, threshold) / "record.json")
        except (CorruptArtifact, FileNotFoundError):
            return r, None
        return r, record if record["error"] is None and record["model_metrics"] else None

    def compose(self, members: list[tuple[Resolved, Record]], threshold: float) -> Composition:
        """The composition of ``members`` at ``threshold`` (read back when its inputs did not change)."""
        first = members[0][0]
        settings = first.overrides.labels()
        ids = [member["run_id"] for _, member in members]
        folder = key_of(method=first.method.name, family=first.spec.family, dataset=str(first.dataset),
                        threshold=threshold, settings=settings, members=ids)
        path = layout.composition_dir(self.ws.out / first.dataset.slug, first.method.name, folder) / "composition.json"
        start = time.perf_counter()
        outputs = [self._outputs(r, threshold) for r, _ in members]
        key = key_of(outputs=[o.sha256 for per in outputs for o in per], selection=SELECTION, votes=VOTES,
                     models=[member["model_metrics"]["test_acc"] for _, member in members])
        with store.locked(path.parent):
            previous = _previous(path)
            if previous is not None and previous.get("key") == key:
                return previous
            composition = self._figures(members, outputs, threshold, settings)
            composition.update(run_id=path.parent.relative_to(self.ws.out).as_posix(), key=key,
                               seconds=time.perf_counter() - start)
            store.atomic_write(path, (json.dumps(as_composition(composition, str(path)), indent=2) + "\n").encode())
        log.info("%s: %d models composed, %.1f%% on the test images", path, len(members),
                 100 * composition["composed_acc"])
        return composition

    def _outputs(self, r: Resolved, threshold: float) -> list[ClassOutputs]:
        """Every class module's outputs of one member (cached by the outputs stage)."""
        runner = self.runner
        trained = runner.train.run(r)
        modules, _ = runner.modularize.run(r, trained, threshold)
        ctx = runner.modularize.context(r, trained, threshold)
        settings = runner.modularize.settings(r, threshold)
        return [runner.outputs.run(r, trained, modules, ctx, settings, label) for label in range(ctx.num_classes)]

    def _figures(self, members: list[tuple[Resolved, Record]], outputs: list[list[ClassOutputs]], threshold: float,
                 settings: dict[str, str]) -> dict[str, Any]:
        first = members[0][0]
        scored = score_members(outputs, self.ws.data_of(first).test.y)
        return {
            "schema": RECORD_SCHEMA, "kind": "composition", "method": first.method.name, "family": first.spec.family,
            "dataset": first.dataset.name, "dataset_args": first.dataset.kwargs, "preset": first.preset,
            "threshold": threshold, "settings": settings, "selection": SELECTION, "votes": VOTES,
            "members": [{"model": r.model.name, "model_args": r.model.kwargs, "seed": r.seed, "run_id": rec["run_id"],
                         "config_key": rec["config_key"], "model_acc": rec["model_metrics"]["test_acc"],
                         "own_acc": own} for (r, rec), own in zip(members, scored.own_accs, strict=True)],
            "choices": scored.choices, "composed_acc": scored.composed_acc, "env": environment(self.ws.device),
        }


@dataclass
class Scored:
    """What composing across members gives: per class the member chosen (and its AUC), the composed classifier's
    test accuracy, and each member's own modules composed alone."""

    choices: list[dict[str, Any]]
    composed_acc: float
    own_accs: list[float]


def score_members(outputs: list[list[ClassOutputs]], labels: torch.Tensor) -> Scored:
    """Per class the member whose module has the highest validation AUC (the first on ties, a NaN AUC last), and
    the test accuracies: ``outputs[m][c]`` is member m's module of class c; ``labels`` the test labels."""
    aucs = torch.tensor([[o.val_auc if not math.isnan(o.val_auc) else -1.0 for o in per] for per in outputs])
    chosen = best_members(aucs)  # (classes,) member indices
    choices = [{"label": label, "member": member, "val_auc": float(aucs[member, label])}
               for label, member in enumerate(chosen)]
    composed = [outputs[member][label] for label, member in enumerate(chosen)]
    return Scored(choices, _accuracy(composed, labels), [_accuracy(per, labels) for per in outputs])


def _accuracy(outputs: list[ClassOutputs], labels: torch.Tensor) -> float:
    """Test accuracy of the argmax of the standardised votes of one module per class."""
    votes = standardised_votes([o.test for o in outputs], [o.val for o in outputs])  # (N, classes)
    return float((votes.argmax(1) == labels).double().mean())


def _previous(path: Path) -> Composition | None:
    try:
        return read_composition(path)
    except CorruptArtifact:
        return None
