"""The TensorBoard observer plugin: what a run writes, read back with TensorBoard's own reader."""

from __future__ import annotations

import logging
import re
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from bench.errors import UsageError
from bench.loggers import tensorboard
from bench.pipeline.runner import run_grid
from bench.plugins.manager import get_plugins
from bench.testing import make_tiny_grid

TASKS = ((0, 1), (2, 3))


def read(directory) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def series(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A tiny grid (standard, two epochs, two tasks) run with MODBENCH_LOG=tensorboard: (record, its run dir)."""
    out = tmp_path_factory.mktemp("tb") / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODBENCH_LOG", "mlflow,tensorboard")
        [record] = run_grid(make_tiny_grid(out, sets=["epochs=2"], tasks=TASKS))
    [directory] = (out / "tensorboard").glob("*/*/*")
    return record, directory


def test_the_cell_gets_its_own_run_directory(logged):
    record, directory = logged
    assert record["error"] is None
    assert directory.parent.parent.name.startswith("synthetic-")
    assert directory.parent.name == "simcnn-width0.125"
    assert re.fullmatch(r"standard-seed0-settings[0-9a-f]{12}", directory.name)  # seven --set values: a digest


def test_short_settings_name_the_cell_readably(tmp_path):
    run = {"method": "mwt", "model": "vit_s:depth=4", "dataset": "folder:path=/data/pets", "seed": 1,
           "settings": {"mwt.alpha": "0.5", "epochs": "30"}, "out": str(tmp_path)}
    expected = tmp_path / "tensorboard" / "folder-path_data_pets" / "vit_s-depth4" / "mwt-seed1-epochs30-mwt.alpha0.5"
    assert tensorboard.cell_directory(run) == expected


def test_epoch_scalars_equal_the_training_history(logged):
    record, directory = logged
    events = read(directory)
    history = record["train_history"]
    assert [row["epoch"] for row in history] == [1, 2]
    metrics = [k for k in history[0] if k != "epoch"]
    assert {"loss", "val_acc", "seconds"} <= set(metrics)
    for metric in metrics:
        steps, values = zip(*series(events, f"train/epoch/{metric}"), strict=True)
        assert steps == (1, 2)
        assert values == pytest.approx([row[metric] for row in history], rel=1e-6)


def test_stage_scalars_equal_the_record(logged):
    record, directory = logged
    events = read(directory)
    for metric in ("retention", "cohesion", "coupling"):
        assert series(events, f"modularize/{metric}") == [(90, pytest.approx(record["modularization"][metric]))]
    for task in record["tasks"]:
        label = "-".join(map(str, task["classes"]))
        for metric in ("module_acc", "standard_acc", "weight_retention", "flops_ratio"):
            assert series(events, f"reuse/{label}/{metric}") == [(90, pytest.approx(task[metric], rel=1e-6))]
    assert series(events, "train/seconds")[0][1] > 0


def test_hparams_carry_the_configuration_and_headline_metrics(logged):
    record, directory = logged
    events = read(directory / "t0.9")
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["method"].string_value == "standard" and hparams["seed"].number_value == 0
    assert hparams["recipe/epochs"].number_value == 2 and hparams["threshold"].number_value == 0.9
    mean_module_acc = sum(t["module_acc"] for t in record["tasks"]) / len(TASKS)
    assert series(events, "hparams/module_acc") == [(0, pytest.approx(mean_module_acc, rel=1e-6))]
    assert series(events, "hparams/model_test_acc")[0][1] == pytest.approx(record["model_metrics"]["test_acc"])


def test_a_tasks_fine_tuning_epochs_are_logged_under_its_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("MODBENCH_LOG", "tensorboard")
    run = {"method": "mwt", "model": "simcnn", "dataset": "digits", "seed": 0, "settings": {}, "out": str(tmp_path)}
    rows = [{"epoch": 1, "loss": 0.9, "val_acc": 0.5}, {"epoch": 2, "loss": 0.4, "val_acc": 0.75}]
    plugins = get_plugins()
    plugins.emit("epoch_end", run, {"stage": "finetune", **rows[0]})  # skipped: the reuse stage brings the rows
    plugins.emit("stage_end", run, {"stage": "modularize", "threshold": 0.7, "retention": 0.25})
    plugins.emit("stage_end", run, {"stage": "reuse", "classes": [3, 1], "module_acc": 0.8, "finetune_history": rows})
    plugins.emit("stage_end", run, {"stage": "control", "control": "random", "classes": [3, 1], "module_acc": 0.6})
    plugins.emit("run_end", run, {"error": "stopped here"})
    events = read(tensorboard.cell_directory(run))
    assert series(events, "finetune/3-1/loss") == [(1, pytest.approx(0.9)), (2, pytest.approx(0.4))]
    assert series(events, "finetune/3-1/val_acc") == [(1, 0.5), (2, 0.75)]
    assert series(events, "reuse/3-1/module_acc") == [(70, pytest.approx(0.8))]
    assert series(events, "control/random/3-1/module_acc") == [(70, pytest.approx(0.6))]
    assert not any(tag.startswith("finetune/epoch") for tag in events.Tags()["scalars"])
    assert not (tensorboard.cell_directory(run) / "t0.7").exists()  # a failed record has no hparams


EVENT = ("epoch_end", {"method": "standard", "model": "simcnn", "dataset": "digits", "seed": 0, "settings": {}},
         {"stage": "train", "epoch": 1, "loss": 2.0})


def test_off_unless_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("MODBENCH_LOG", raising=False)
    event, run, payload = EVENT
    get_plugins().emit(event, {**run, "out": str(tmp_path)}, payload)
    assert not (tmp_path / "tensorboard").exists()


def test_without_tensorboard_one_warning_then_quiet(tmp_path, monkeypatch):
    monkeypatch.setenv("MODBENCH_LOG", "tensorboard")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    monkeypatch.setattr(tensorboard, "_logger", tensorboard.TensorBoardLogger())
    with pytest.raises(UsageError, match=r'^logging to TensorBoard needs it installed: pip install "modbench\['):
        tensorboard.summary_writer()
    event, run, payload = EVENT
    seen = ListHandler()  # the 'bench' logger's only handler: what pytest's capture does with it cannot count twice
    bench_log = logging.getLogger("bench")
    monkeypatch.setattr(bench_log, "handlers", [seen])
    monkeypatch.setattr(bench_log, "propagate", False)
    monkeypatch.setattr(bench_log, "level", logging.WARNING)
    for _ in range(3):
        get_plugins().emit(event, {**run, "out": str(tmp_path)}, payload)
    warnings = [r.getMessage() for r in seen.records]
    assert len(warnings) == 1 and 'pip install "modbench[tensorboard]"' in warnings[0]
    assert not (tmp_path / "tensorboard").exists()


class ListHandler(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_close_flushes_a_cell_that_never_ended(tmp_path):
    """A distilled model's teacher trains without a record, so no run_end closes its writer: exit does."""
    logger = tensorboard.TensorBoardLogger()
    event, run, payload = EVENT
    run = {**run, "out": str(tmp_path)}
    logger.handle(event, run, payload)
    logger.close()
    assert series(read(tensorboard.cell_directory(run)), "train/epoch/loss") == [(1, 2.0)]
    assert logger.cells == {}
