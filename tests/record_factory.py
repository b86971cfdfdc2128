"""Records built in a test the way the pipeline writes them (the current schema, or an older one as written then)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.record import CONFIG_FIELDS, RECORD_SCHEMA, baseline_check, config_key, training_cost

RECIPE = {"epochs": 2, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0, "momentum": 0.9,
          "nesterov": True, "schedule": "cosine", "warmup_epochs": 0, "finetune_epochs": 1, "finetune_lr": 0.05,
          "val_fraction": 0.1, "eval_batch_size": 64, "activity_samples": 16, "latency_batch": 2,
          "precision": "auto", "deterministic": False, "compile": False}
HPARAMS = {"standard": {}, "mwt": {"alpha": 0.5, "beta": 1.5, "extraction": "exact"},
           "nemo": {"alpha": 1.0, "tau": 0.2, "extraction": "exact"}}


def task(classes: list[int], module_acc: float, weights: float = 0.5, standard_acc: float = 0.9,
         **extra: Any) -> dict[str, Any]:
    """One task's figures; ``weights`` drives the size figures."""
    return {"classes": classes, "module_acc": module_acc, "module_acc_before_finetune": module_acc - 0.05,
            "standard_acc": standard_acc, "retention": weights + 0.05, "retention_sum": 2 * weights,
            "params": int(1000 * weights), "weight_retention": weights, "flops": int(5000 * weights),
            "flops_ratio": weights + 0.1, "latency_ratio": 0.8, "seconds": 1.5, "module_file": "0-1-abc.pt", **extra}


def make_record(method: str = "mwt", seed: int = 0, *, model: str = "simcnn", model_args: dict | None = None,
                family: str = "cnn", dataset: str = "digits", threshold: float = 0.9, preset: str = "smoke",
                hparams: dict | None = None, recipe: dict | None = None, test_acc: float = 0.95,
                tasks: list[dict] | None = None, cohesion: float = 0.9, coupling: float = 0.3,
                standard_test_acc: float | None = None, num_classes: int = 10, error: str | None = None,
                schema: int = RECORD_SCHEMA, **fields: Any) -> dict[str, Any]:
    """A complete record; ``fields`` replace top-level fields after it is built."""
    hparams = dict(HPARAMS.get(method, {}), **(hparams or {}))
    model_args = {"width": 0.25} if model_args is None else model_args
    record: dict[str, Any] = {
        "schema": schema, "run_id": "", "method": method,
        "model": model, "model_args": model_args, "family": family, "dataset": dataset, "dataset_args": {},
        "seed": seed, "preset": preset, "threshold": threshold, "hparams": hparams,
        "recipe": dict(RECIPE, **(recipe or {})),
        "env": {"modbench": "0.1.0", "torch": "2.4", "device": "AMD EPYC", "git": "abc", "started": "2026-01-01"},
        "model_metrics": None if error else {"test_acc": test_acc, "params": 1000, "flops": 5000,
                                             "train_seconds": 12.0},
        "modularization": None if error else {"threshold": threshold, "unit": "kernel", "units_total": 100,
                                              "retention": 0.5, "cohesion": cohesion, "coupling": coupling,
                                              "seconds": 0.5},
        "tasks": [] if error else (tasks if tasks is not None else [task([0, 1], 0.97), task([2, 3, 4], 0.93)]),
        "train_history": [{"epoch": 1, "loss": 1.0, "val_acc": 0.9}], "error": error,
    }
    record["run_id"] = f"{dataset}/{model}/{method}/{config_key(record)}-s{seed}/t{threshold:g}"
    if schema >= 2:
        record.update(precision="fp32", deterministic=False, last_error=None)
        record["config_key"] = config_key(record)
        std = test_acc if standard_test_acc is None else standard_test_acc
        record["baseline"] = None if error else baseline_check(std, test_acc, num_classes)
    if schema >= 3:
        record["cost"] = None if error else training_cost(12.0, 0.5, 10.0, "AMD EPYC", "AMD EPYC")
    record.update(fields)
    if schema >= 2 and "config_key" not in fields and CONFIG_FIELDS & fields.keys():
        record["config_key"] = config_key(record)
    return record


def write_records(runs: Path, records: list[dict[str, Any]]) -> list[Path]:
    """Write each record as ``runs/<run_id>/record.json``; returns the paths."""
    paths = []
    for record in records:
        path = runs / record["run_id"] / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


def patch_entry(label: int, strategy: str = "replace", acc: float = 0.8, f1: float = 0.9,
                weak_acc: float = 0.6, weak_f1: float = 0.1) -> dict[str, Any]:
    """One patched class's figures, as ``--scenario patch`` records them."""
    return {"label": label, "strategy": strategy, "weak_acc": weak_acc, "acc": acc, "weak_precision": weak_f1,
            "weak_recall": weak_f1, "weak_f1": weak_f1, "precision": f1, "recall": f1, "f1": f1}


def patching(*entries: dict[str, Any]) -> dict[str, Any]:
    """A record's ``patching`` section holding ``entries``."""
    return {"settings": {"fraction": 0.1, "epochs": 20, "without": None, "calibration_epochs": 100,
                         "calibration_lr": 0.05},
            "weak": {"test_acc": 0.6, "images": 130, "seconds": 2.0}, "entries": list(entries)}
