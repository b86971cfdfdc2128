"""Model selection in the reuse stage: the composed module stays when no fine-tuning epoch beats it on validation."""

import pytest
import torch

from bench.pipeline.runner import run_grid
from bench.report.export import export_module
from bench.testing import make_tiny_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# AdamW at lr 1 wrecks a tiny module's fine-tuning (its ReLU head dies) while the loss stays finite; batches of 16
# teach the model its classes in 3 epochs, so a composed module scores well above chance on validation and the
# wrecked fine-tuning (one class for every image) cannot tie it, whatever the thread count rounds
WRECKING = ["finetune_optimizer=adamw", "finetune_lr=1.0", "finetune_epochs=2", "epochs=3", "batch_size=16"]


def test_a_module_fine_tuning_cannot_improve_is_reused_as_composed_and_exports(tmp_path):
    grid = make_tiny_grid(tmp_path / "runs", methods="mwt", sets=WRECKING, tasks=((0, 1), (2, 3)))
    records = run_grid(grid, "local", executor_options={"workers": 1})
    record = next(r for r in records if r["method"] == "mwt")
    assert record["error"] is None
    rejected = [t for t in record["tasks"] if not t["finetune_kept"]]
    assert rejected, record["tasks"]  # the wrecked fine-tuning lost on validation at least once
    for task in rejected:
        assert task["module_acc"] == task["module_acc_before_finetune"]  # the composed module, scored as such
        assert 0 <= task["val_acc_composed"] <= 1
    classes = tuple(rejected[0]["classes"])
    program = torch.export.load(export_module(record, classes, tmp_path / "module.pt2", grid.out))
    logits = program.module()(torch.rand(3, 3, 32, 32))
    assert logits.shape == (3, len(classes))  # its own target columns, no task head
