"""What one process shares while it runs cells: plugins, resolver, device, data sets, bars, events.

Stages ask the workspace for data batches and for the one fitting path (training and fine-tuning
alike); they never touch the console or the plugins directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.data import BatchLoader, DataBundle
from bench.grid.config import GridConfig
from bench.grid.resolve import Resolved, Resolver
from bench.pipeline.datakeys import DataKeys
from bench.pipeline.progress import Bars
from bench.pipeline.training import Schedule, cross_entropy_loss, fit
from bench.plugins.manager import Plugins
from bench.protocol.recipe import Recipe
from bench.refs import Ref

log = logging.getLogger("bench")


class Workspace:
    """The run-wide context of the stages: where results go, which device, which data.

    ``read_only`` workspaces (``bench show``, ``bench export``) never compute a stage: a missing
    one raises ``StageMissing``.
    """

    def __init__(self, grid: GridConfig, plugins: Plugins, device: torch.device, bars: Bars,
                 read_only: bool = False) -> None:
        self.grid = grid
        self.plugins = plugins
        self.resolver = Resolver(plugins, grid.preset)
        self.device = device
        self.bars = bars
        self.read_only = read_only
        self._data: dict[tuple[Ref, float], DataBundle] = {}
        self.data_keys = DataKeys(grid.out, read_only)
        self.locate: Callable[[Resolved], Path] | None = None  # a cell's trained-model folder (set by the runner)

    @property
    def out(self) -> Path:
        """The runs directory."""
        return self.grid.out

    def precision(self, r: Resolved) -> str:
        """'fp32' or 'bf16': the precision ``r`` trains and is timed in on this device."""
        return r.recipe.resolved_precision(self.device.type)

    def data(self, ref: Ref, val_fraction: float) -> DataBundle:
        """The data set ``ref`` (loaded once per process)."""
        key = (ref, val_fraction)
        if key not in self._data:
            spec = self.plugins.datasets.get(ref.name)
            self._data[key] = spec.load(self.grid.data_root, self.grid.download, val_fraction, **ref.kwargs)
        return self._data[key]

    def data_key(self, r: Resolved) -> str | None:
        """The content key of ``r``'s data set (once per process); None for a data set whose name and options
        determine it (no ``content_key``)."""
        spec = self.plugins.datasets.get(r.dataset.name)
        content_key = getattr(spec, "content_key", None)
        if content_key is None:
            return None
        return self.data_keys.key(r.dataset, content_key(self.grid.data_root, **r.dataset.kwargs),
                                  lambda: self.data_of(r))

    def data_of(self, r: Resolved) -> DataBundle:
        """The data set of cell ``r``."""
        return self.data(r.dataset, r.recipe.val_fraction)

    def loader(self, r: Resolved, split: str, data: DataBundle | None = None, train: bool = False) -> BatchLoader:
        """Batches of one split: shuffled and augmented for training, in order otherwise."""
        data = data or self.data_of(r)
        tensors = getattr(data, split)
        batch = r.recipe.batch_size if train else r.recipe.eval_batch_size
        return BatchLoader(tensors, batch, mean=data.mean, std=data.std, device=self.device, shuffle=train,
                           augment=r.recipe.train_augment(data.augment) if train else "none", seed=r.seed,
                           drop_last=train and len(tensors) > batch)

    def fit(self, r: Resolved, model: nn.Module, schedule: Schedule, stage: str, data: DataBundle | None = None,
            loss_fn: Callable | None = None, groups: list[dict] | None = None, recipe: Recipe | None = None,
            select_best: bool = False) -> list[dict[str, float]]:
        """The one fitting path of training and fine-tuning: loop, bars, per-epoch log lines and events.

        ``recipe`` sets the optimizer (default: the cell's training recipe; fine-tuning passes its own).
        """
        train, val = self.loader(r, "train", data, train=True), self.loader(r, "val", data)
        self.bars.start("stage", f"{stage} {r.method.name} {r.model}", schedule.epochs)
        self.bars.start("batch", "  batches", len(train))

        def epoch_done(row: dict[str, float]) -> None:
            self.bars.advance("stage")
            self.bars.start("batch", "  batches", len(train))
            shown = "  ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
            log.info("%s %s %s epoch %d: %s", stage, r.method.name, r.model, row["epoch"], shown)
            self.emit("epoch_end", r, {"stage": stage, **row})

        try:
            return fit(model, train, val, recipe or r.recipe, schedule, loss_fn or cross_entropy_loss, groups,
                       select_best=select_best,
                       on_batch=lambda: self.bars.advance("batch"), on_epoch=epoch_done)
        finally:
            self.bars.hide("stage")
            self.bars.hide("batch")

    def run_info(self, r: Resolved) -> dict[str, Any]:
        """How events identify a cell: its names, seed and settings."""
        info = {"method": r.method.name, "model": str(r.model), "dataset": str(r.dataset), "seed": r.seed,
                "settings": r.overrides.labels(), "out": str(self.out)}
        if self.locate is not None:
            info["directory"] = str(self.locate(r))
        return info

    def emit(self, event: str, r: Resolved, payload: dict[str, Any]) -> None:
        """Tell observer plugins about ``event`` of cell ``r``."""
        self.plugins.emit(event, self.run_info(r), payload)
