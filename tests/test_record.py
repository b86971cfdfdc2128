"""The record schema: one reader that checks types, upgrades schema 1 and names a bad file in one line."""

from __future__ import annotations

import json

import pytest
from record_factory import make_record, patch_entry, patching, task

from bench.pipeline.stages.record import RecordStage
from bench.record import (
    RECORD_SCHEMA,
    BadRecord,
    as_composition,
    as_record,
    baseline_check,
    config_key,
    read_composition,
    read_record,
    to_json,
    training_cost,
    validate,
)


def write(tmp_path, content: bytes | str, name: str = "record.json"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_a_schema3_record_reads_back_as_written(tmp_path):
    control = {"module_acc": 0.9, "module_acc_before_finetune": 0.5, "finetune_kept": True, "params": 500,
               "weight_retention": 0.5, "flops_ratio": 0.6}
    record = make_record("nemo", tasks=[task([0, 1], 0.97, latency_ratio_b1=0.7, flops_merged=1200,
                                             controls={"random": control})],
                         modularization={"threshold": 0.9, "unit": "kernel", "units_total": 100, "retention": 0.5,
                                         "cohesion": 0.9, "coupling": 0.3, "seconds": 0.5,
                                         "method_metrics": {"candidates_per_second": 12.5},
                                         "empty_layer_fallbacks": 2})
    path = write(tmp_path, to_json(record))
    assert read_record(path) == record
    assert json.loads(path.read_text())["schema"] == RECORD_SCHEMA == 3
    assert record["cost"]["ratio"] == (12.0 + 0.5) / 10.0


def test_a_schema2_record_is_upgraded_in_memory_without_a_cost(tmp_path):
    old = make_record("mwt", schema=2)
    assert "cost" not in old
    record = read_record(write(tmp_path, json.dumps(old)))
    assert record["schema"] == 3 and record["cost"] is None
    assert {k: v for k, v in record.items() if k not in ("schema", "cost")} == \
        {k: v for k, v in old.items() if k != "schema"}


@pytest.mark.parametrize("seconds, devices, imported, ratio", [
    ((20.0, 5.0, 10.0), ("cpu", "cpu"), False, 2.5),
    ((0.001, 40.0, 10.0), ("cpu", None), False, 4.0001),  # a post-training method's search; a device unknown
    ((20.0, 5.0, 10.0), ("NVIDIA H100", "cpu"), False, None),  # not the same device
    ((20.0, 5.0, 0.0), ("cpu", "cpu"), True, None),  # an imported standard model: no training time
    ((20.0, 5.0, 10.0), ("cpu", "cpu"), True, None),
])
def test_training_cost_rule(seconds, devices, imported, ratio):
    cost = training_cost(*seconds, *devices, imported=imported)
    assert cost["ratio"] == pytest.approx(ratio) if ratio is not None else cost["ratio"] is None
    assert (cost["train_seconds"], cost["modularize_seconds"], cost["standard_train_seconds"]) == seconds


def test_training_cost_counts_the_tasks_composition():
    cost = training_cost(0.001, 0.5, 10.0, "cpu", "cpu", compose_seconds=19.5)  # SeaM: a search per task
    assert cost["compose_seconds"] == 19.5 and cost["ratio"] == pytest.approx(2.0001)

def test_a_schema1_record_is_upgraded_in_memory(tmp_path):
    old = make_record("mwt", schema=1, recipe={"precision": "auto"})
    for field in ("precision", "deterministic", "config_key", "baseline", "last_error"):
        assert field not in old
    del old["dataset_args"], old["train_history"]  # the earliest schema-1 records lack both
    record = read_record(write(tmp_path, json.dumps(old)))
    assert record["schema"] == 3 and record["precision"] == "fp32" and record["deterministic"] is False
    assert record["baseline"] is None and record["last_error"] is None and record["cost"] is None
    assert record["dataset_args"] == {} and record["train_history"] == []
    assert record["config_key"] == config_key(record)
    on_gpu = as_record(dict(old, env={**old["env"], "device": "NVIDIA H100 80GB HBM3"}))
    assert on_gpu["precision"] == "bf16"
    assert as_record(dict(old, recipe={**old["recipe"], "precision": "fp32"}), "x")["precision"] == "fp32"


def test_config_key_ignores_the_seed_and_threshold_but_not_the_configuration():
    base = make_record("nemo", seed=0)
    assert config_key(make_record("nemo", seed=3, threshold=0.8)) == config_key(base)
    for other in (make_record("nemo", hparams={"alpha": 0.5}), make_record("nemo", recipe={"epochs": 3}),
                  make_record("nemo", model_args={"width": 0.5}), make_record("nemo", preset="paper"),
                  make_record("mwt"), dict(base, precision="bf16")):
        assert config_key(other) != config_key(base)


@pytest.mark.parametrize("standard, method, classes, flag", [
    (0.12, 0.95, 10, "chance"),        # below 1.5x chance
    (0.16, 0.95, 10, "below_method"),  # above 1.5x chance, 79 points below the method's model
    (0.84, 0.95, 10, "below_method"),
    (0.86, 0.95, 10, None),            # within 10 points
    (0.30, 0.35, 4, "chance"),
    (0.40, 0.35, 4, None),
    (0.12, 0.12, None, None),          # number of classes unknown: no chance rule
])
def test_baseline_rule(standard, method, classes, flag):
    baseline = baseline_check(standard, method, classes)
    assert baseline["flag"] == flag
    assert (baseline["message"] is None) == (flag is None)
    assert baseline["standard_test_acc"] == standard and baseline["method_test_acc"] == method


BAD_FILES = [
    (b"\xff\xfe\x00garbage", "not a record (not UTF-8 text)"),
    ('{"schema": 2, "run_id": ', "not a record (not JSON"),
    ("[1, 2]", "not a record (a JSON list, expected an object)"),
    ('"record"', "not a record (a JSON string, expected an object)"),
    ("{}", "not a record (no 'schema' field)"),
    ('{"schema": 1}', "invalid record: missing 16 fields: 'run_id', 'method', 'model', 'model_args', …"),
    ('{"schema": 0}', "record schema 0 is older than this modbench reads (1 to 3)"),
    ('{"schema": 7}', "record schema 7 is newer than this modbench reads (1 to 3); upgrade modbench"),
]


@pytest.mark.parametrize("content, message", BAD_FILES)
def test_a_bad_file_is_one_line_naming_it(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(BadRecord) as info:
        read_record(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
    assert info.value.exit_code == 1


@pytest.mark.parametrize("change, message", [
    ({"config_key": None}, "'config_key' should be a string, got null"),
    ({"precision": "fp16"}, "'precision' should be 'fp32' or 'bf16', got 'fp16'"),
    ({"deterministic": "no"}, "'deterministic' should be true or false, got 'no'"),
    ({"seed": 1.5}, "'seed' should be an integer, got 1.5"),
    ({"baseline": {"flag": "chance"}}, "'baseline' is missing 'message', 'method_test_acc', 'standard_test_acc'"),
    ({"baseline": {"standard_test_acc": 0.1, "method_test_acc": 0.9, "flag": "bad", "message": None}},
     "'baseline.flag' should be 'chance' or 'below_method' or null, got 'bad'"),
    ({"last_error": {"message": "boom"}}, "'last_error' is missing 'when'"),
    ({"tasks": [{"classes": [0, 1]}]}, "'tasks[0]' is missing 10 fields: 'flops', 'flops_ratio'"),
    ({"tasks": [{**task([0, 1], 0.9), "module_acc": "high"}]},
     "'tasks[0].module_acc' should be a number, got 'high'"),
    ({"model_metrics": {"test_acc": True, "params": 1, "flops": 1, "train_seconds": 1.0}},
     "'model_metrics.test_acc' should be a number, got true"),
    ({"cost": {"train_seconds": 1.0}}, "'cost' is missing 5 fields"),
    ({"tasks": [task([0, 1], 0.9, controls={"random": {"module_acc": 0.9}})]},
     "'tasks[0].controls.random' is missing 'flops_ratio', 'module_acc_before_finetune', 'params', 'weight_retention'"),
])
def test_a_field_of_the_wrong_type_is_named(change, message):
    with pytest.raises(BadRecord, match=r"^somewhere: invalid record: ") as info:
        validate(dict(make_record(), **change), "somewhere")
    assert message in str(info.value)


def test_missing_required_fields_are_named():
    record = make_record()
    del record["config_key"], record["baseline"]
    with pytest.raises(BadRecord, match="missing 'baseline', 'config_key'"):
        as_record(record, "r")


def test_to_json_refuses_an_invalid_record():
    with pytest.raises(BadRecord):
        to_json(dict(make_record(), tasks="none"))


def test_extra_fields_are_kept():
    record = make_record(notes="kept", tasks=[task([0, 1], 0.9, new_figure=1.0)])
    assert validate(record) is record


def test_an_error_record_is_valid():
    record = make_record(error="RuntimeError: boom")
    assert record["model_metrics"] is None and record["tasks"] == [] and record["baseline"] is None
    assert validate(record)["error"] == "RuntimeError: boom"


def test_a_schema2_record_reads_as_schema3_without_patching(tmp_path):
    old = make_record("nemo", schema=2)
    record = read_record(write(tmp_path, json.dumps(old)))
    assert record["schema"] == 3 and "patching" not in record
    assert record == {**old, "schema": 3, "cost": None}


def test_a_record_with_patching_validates_and_a_bad_entry_is_named():
    record = make_record(patching=patching(patch_entry(0), patch_entry(0, "calibrate")))
    assert validate(record) is record
    bad = make_record(patching=patching(patch_entry(0, strategy="swap")))
    with pytest.raises(BadRecord, match=r"'patching.entries\[0\].strategy' should be 'replace' or 'calibrate'"):
        validate(bad)
    with pytest.raises(BadRecord, match="'patching' is missing 'weak'"):
        validate(make_record(patching={"settings": {}, "entries": []}))


def composition(**change) -> dict:
    member = {"model": "simcnn", "model_args": {"width": 0.25}, "seed": 0, "run_id": "digits/a", "config_key": "k",
              "model_acc": 0.9, "own_acc": 0.85}
    return {"schema": 3, "kind": "composition", "run_id": "digits/compositions/mwt/abc", "method": "mwt",
            "family": "cnn", "dataset": "digits", "dataset_args": {}, "preset": "smoke", "threshold": 0.9,
            "settings": {}, "selection": "val_auc",
            "votes": "standardised", "members": [member, dict(member, seed=1, run_id="digits/b")],
            "choices": [{"label": 0, "member": 1, "val_auc": 1.0}], "composed_acc": 0.93, "key": "k",
            "seconds": 1.0, "env": {}, **change}


def test_a_composition_record_reads_back_and_a_record_is_not_one(tmp_path):
    path = write(tmp_path, json.dumps(composition()), "composition.json")
    assert read_composition(path) == composition()
    with pytest.raises(BadRecord, match="not a composition record"):
        read_composition(write(tmp_path, to_json(make_record()), "record2.json"))
    with pytest.raises(BadRecord, match="'members\\[0\\]' is missing 'own_acc'"):
        as_composition(composition(members=[{k: v for k, v in composition()["members"][0].items() if k != "own_acc"}]))
    with pytest.raises(BadRecord, match="newer than this modbench reads"):
        as_composition(composition(schema=4))


def test_patched_classes_are_kept_only_when_computed_from_the_same_model_and_masks(tmp_path, caplog):
    inputs = {"model": "a" * 64, "modules": "m1"}
    stage = RecordStage(ws=None)
    earlier = make_record("mwt", patching={**patching(patch_entry(0)), "inputs": inputs})
    stage.write(tmp_path, earlier, inputs=inputs)
    kept = stage.write(tmp_path, make_record("mwt"), inputs=inputs)  # this run patched nothing
    assert kept["patching"]["entries"] == [patch_entry(0)]
    with caplog.at_level("WARNING", logger="bench"):
        dropped = stage.write(tmp_path, make_record("mwt"), inputs={**inputs, "model": "b" * 64})
    assert "patching" not in dropped and "another trained model or other module masks" in caplog.text


def test_an_unstructured_sparse_task_is_labelled_and_a_bad_label_is_named(tmp_path):
    sparse = make_record("seam", tasks=[task([0, 1], 0.9, sparsity="unstructured", flops_dense=9000,
                                             flops_ratio_dense=1.0)])
    assert read_record(write(tmp_path, to_json(sparse)))["tasks"][0]["sparsity"] == "unstructured"
    with pytest.raises(BadRecord, match=r"'tasks\[0\]\.sparsity' should be 'unstructured', got 'pruned'"):
        validate(make_record("seam", tasks=[task([0, 1], 0.9, sparsity="pruned")]))
