"""TensorBoard logging: a built-in observer plugin of ``on_run_event``, off unless asked for.

``MODBENCH_LOG=tensorboard`` (what ``bench run --log tensorboard`` sets; a comma list may name
other loggers too) writes one TensorBoard run per grid cell under
``<runs>/tensorboard/<dataset>/<model>/<method>-seed<seed>[-<settings>]``:

- ``epoch_end``: ``train/epoch/<metric>`` at step = epoch (loss terms, val_acc, lr, seconds);
- ``stage_end``: ``train/seconds``; ``modularize/<metric>`` (retention, cohesion, coupling, ...) and
  ``reuse/<classes>/<metric>`` (module_acc, standard_acc, ratios, ...) at step = threshold x 100;
  the task's fine-tuning epochs as ``finetune/<classes>/<metric>`` at step = epoch;
- ``run_end``: the record's configuration as hparams with its headline metrics (``hparams/...``),
  in the sub-run ``t<threshold>``.

TensorBoard itself is an extra (``pip install "modbench[tensorboard]"``), imported on first use.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.hookspecs import hookimpl
from bench.refs import Ref, parse_refs

ENV_VAR = "MODBENCH_LOG"
NAME = "tensorboard"
FLUSH_SECONDS = 10
MAX_CELL_NAME = 96


def enabled() -> bool:
    """Whether ``MODBENCH_LOG`` names this logger."""
    return NAME in {name.strip() for name in os.environ.get(ENV_VAR, "").split(",")}


def summary_writer() -> type:
    """TensorBoard's ``SummaryWriter`` class; a one-line UsageError when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError('logging to TensorBoard needs it installed: pip install "modbench[tensorboard]"') from None
    return SummaryWriter


def cell_directory(run: dict[str, Any]) -> Path:
    """Where a cell's events go: ``<runs>/tensorboard/<dataset>/<model>/<method>-seed<seed>[-<settings>]``.

    The ``--set`` values name the cell too (a sweep's cells differ by them alone); when they make
    a long name, a digest of them stands in.
    """
    settings = tuple(sorted((run.get("settings") or {}).items()))
    cell = Ref(f"{run['method']}-seed{run['seed']}", settings)
    if len(cell.slug) > MAX_CELL_NAME:
        digest = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]
        cell = Ref(cell.name, (("settings", digest),))
    dataset, model = (parse_refs([run[key]])[0].slug for key in ("dataset", "model"))
    return Path(run["out"]) / NAME / dataset / model / cell.slug


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The entries of ``values`` that are numbers (booleans and nested values left out)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def hparams_of(record: dict[str, Any]) -> dict[str, Any]:
    """A record's configuration as flat TensorBoard hparams (lists and dicts as JSON text)."""
    flat: dict[str, Any] = {key: record[key] for key in ("method", "model", "dataset", "seed", "preset", "threshold")}
    for group in ("model_args", "dataset_args", "recipe", "hparams"):
        for key, value in (record.get(group) or {}).items():
            flat[f"{group}/{key}"] = value if isinstance(value, int | float | str | bool) else json.dumps(value)
    return flat


def metrics_of(record: dict[str, Any]) -> dict[str, float]:
    """A record's headline figures: model accuracy, modularity and the tasks' mean accuracies."""
    figures = {f"hparams/model_{k}": v for k, v in numbers(record.get("model_metrics") or {}).items()}
    figures.update({f"hparams/{k}": v for k, v in numbers(record.get("modularization") or {}).items()
                    if k in ("retention", "cohesion", "coupling")})
    tasks = record.get("tasks") or []
    for key in ("module_acc", "standard_acc"):
        if tasks:
            figures[f"hparams/{key}"] = sum(t[key] for t in tasks) / len(tasks)
    return figures


@dataclass
class CellLog:
    """A cell's open writer and the module threshold its latest stages ran at."""

    writer: Any
    threshold: float | None = None

    @property
    def step(self) -> int:
        """The step of per-threshold scalars: the threshold in percent (0 before modularization)."""
        return 0 if self.threshold is None else round(self.threshold * 100)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Every number of ``values`` as ``<prefix>/<key>`` at ``step``."""
        for key, value in numbers(values).items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)


class TensorBoardLogger:
    """Turns run events into TensorBoard scalars and hparams, one writer per cell."""

    def __init__(self) -> None:
        self.cells: dict[Path, CellLog] = {}
        self.unavailable = False  # TensorBoard is missing: said once, then quiet

    def handle(self, event: str, run: dict[str, Any], payload: dict[str, Any]) -> None:
        """Write what ``event`` reports about cell ``run``."""
        directory = cell_directory(run)
        if directory not in self.cells:
            self.cells[directory] = CellLog(self._writer(directory))
        cell = self.cells[directory]
        if event == "epoch_end" and payload["stage"] != "finetune":  # fine-tuning rows come with their task
            cell.scalars(f"{payload['stage']}/epoch", {k: v for k, v in payload.items() if k != "epoch"},
                         int(payload["epoch"]))
        elif event == "stage_end":
            self._stage_end(cell, payload)
        elif event == "run_end":
            self._run_end(directory, payload)

    def close(self) -> None:
        """Flush and close every open writer (cells without a run_end, such as a distilled model's teacher)."""
        for cell in self.cells.values():
            cell.writer.close()
        self.cells.clear()

    def _writer(self, directory: Path) -> Any:
        try:
            writer_class = summary_writer()
        except UsageError:
            self.unavailable = True
            raise
        return writer_class(log_dir=str(directory), flush_secs=FLUSH_SECONDS)

    @staticmethod
    def _stage_end(cell: CellLog, payload: dict[str, Any]) -> None:
        stage = payload["stage"]
        if stage == "modularize":
            cell.threshold = payload["threshold"]
        if stage not in ("reuse", "control"):
            cell.scalars(stage, payload, cell.step)
            return
        classes = "-".join(str(c) for c in payload["classes"])
        if stage == "control":  # a task's control: its figures under its kind and classes
            cell.scalars(f"control/{payload['control']}/{classes}", payload, cell.step)
            return
        cell.scalars(f"reuse/{classes}", payload, cell.step)
        for row in payload.get("finetune_history") or []:
            cell.scalars(f"finetune/{classes}", {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))

    def _run_end(self, directory: Path, record: dict[str, Any]) -> None:
        cell = self.cells.pop(directory)
        if record.get("error") is None:
            cell.writer.add_hparams(hparams_of(record), metrics_of(record), run_name=f"t{record['threshold']:g}")
        cell.writer.close()


_logger = TensorBoardLogger()
atexit.register(_logger.close)


@hookimpl
def on_run_event(event: str, run: dict[str, Any], payload: dict[str, Any]) -> None:
    """Log the event to TensorBoard when ``MODBENCH_LOG`` names ``tensorboard``; otherwise nothing.

    Without TensorBoard installed the first event raises the one-line UsageError (the plugin
    manager logs it as a warning) and the logger stays quiet afterwards.
    """
    if enabled() and not _logger.unavailable:
        _logger.handle(event, run, payload)
