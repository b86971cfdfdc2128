"""``bench import``: an authors' checkpoint becomes a cell's train stage, and ``bench run`` evaluates it untrained."""

from __future__ import annotations

import authors_models as authors
import pytest
import torch
from click.testing import CliRunner

import bench.pipeline.workspace
from bench.cli import cli
from bench.pipeline.runner import run_grid
from bench.testing import TINY_SETTINGS, make_tiny_grid

DATASET = "synthetic:size=200,test_size=50"
MODEL = "simcnn:width=0.125"
SETTINGS = TINY_SETTINGS  # import names the cell exactly as the run below does


def import_args(path, *extra: str) -> list[str]:
    sets = [arg for setting in SETTINGS for arg in ("--set", setting)]
    return ["import", str(path), "--source", "mwt", "--model", MODEL, "--dataset", DATASET, *sets, *extra]


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(3)
    model = authors.SimCNN(10, 0.125, modular=True)
    path = tmp_path / "simcnn_modular.pth"
    torch.save(model.state_dict(), path)
    return path


def test_an_imported_modular_checkpoint_is_evaluated_without_training(tmp_path, checkpoint, monkeypatch):
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, import_args(checkpoint, "--out", str(out)))
    assert result.exit_code == 0, result.output
    assert "stored as the trained mwt model of simcnn:width=0.125" in result.output
    (model_json,) = out.glob("*/*/mwt/*/model.json")

    trained = []
    original = bench.pipeline.workspace.fit

    def spy(model, *args, **kwargs):
        trained.append(model)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(bench.pipeline.workspace, "fit", spy)
    grid = make_tiny_grid(out, methods="mwt", models=MODEL, datasets=DATASET)
    records = {r["method"]: r for r in run_grid(grid)}
    mwt = records["mwt"]
    assert mwt["error"] is None and mwt["model_metrics"]["train_seconds"] == 0.0
    assert mwt["train_history"] == []  # imported: no training of its own
    assert len(list(out.glob("*/*/mwt/*/model.json"))) == 1 and model_json.exists()
    fits = len(trained)
    assert fits == 1 + len(mwt["tasks"])  # the standard model's training and the module's fine-tuning only


@pytest.mark.parametrize("extra, message", [
    (("--method", "standard"), "holds mask generators, so it is not what method standard trains"),
    (("--set", "epochs=1,2"), "give single --set values, not sweeps"),
])
def test_import_refuses_what_does_not_fit(tmp_path, checkpoint, extra, message):
    result = CliRunner().invoke(cli, import_args(checkpoint, "--out", str(tmp_path / "runs"), *extra))
    assert result.exit_code != 0
    assert message in str(result.exception or result.output)
