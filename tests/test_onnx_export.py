"""``bench export --format onnx``: onnxruntime gives the logits of the module in PyTorch, for a CNN, a ViT and
a CNNSplitter-style composition; a missing ``modbench[onnx]`` is one line naming the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from console import invoker
from torch import nn

from bench.modular.ensemble import ClassModules
from bench.pipeline.runner import run_grid
from bench.record import Record
from bench.report.export import Normalized, module_of
from bench.report.onnx import onnx_bytes
from bench.testing import TINY_MODEL, make_tiny_grid

ort = pytest.importorskip("onnxruntime", reason="pip install 'modbench[onnx]'")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODELS = {"cnn": TINY_MODEL, "vit": "vit_s:depth=2,width=0.125"}
TASK = (0, 1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_standard) -> tuple[Path, dict[str, Record]]:
    """MwT (and the standard model) on a tiny CNN and a tiny ViT, one task."""
    out = tiny_standard.copy_to(tmp_path_factory.mktemp("onnx") / "runs")
    records = run_grid(make_tiny_grid(out, methods=("mwt",), models=tuple(MODELS.values()), tasks=(TASK,)))
    mwt = {r["family"]: r for r in records if r["method"] == "mwt"}
    assert sorted(mwt) == ["cnn", "vit"] and all(r["error"] is None for r in records)
    return out, mwt


@pytest.fixture
def cli(monkeypatch, capsys):
    return invoker(capsys, monkeypatch)


def run_onnx(path: Path | bytes, images: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "images" and graph_input.shape == ["batch", 3, 32, 32]
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    return logits


@pytest.mark.parametrize("family", list(MODELS))
def test_onnxruntime_gives_the_logits_of_the_module(runs, family, cli, tmp_path):
    out, records = runs
    record = records[family]
    result = cli("export", out / record["run_id"], "--task", "0,1", "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert result.code == 0 and result.line() == f"wrote {tmp_path / 'm.onnx'}"
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module_of(record, TASK, out)(images).numpy()
    got = run_onnx(tmp_path / "m.onnx", images)
    assert got.shape == (5, len(TASK))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_composition_of_class_modules_exports(tmp_path):
    """CNNSplitter's task model (one module per class, each voting with its own-class logit) as ONNX."""
    torch.manual_seed(0)

    def tiny_cnn() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, 5))

    composed = ClassModules([tiny_cnn(), tiny_cnn()], classes=[3, 1], num_classes=5)
    module = Normalized(composed, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(module, (torch.rand(2, 3, 32, 32),), dynamic_shapes={"x": {0: batch}})
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = module(images).numpy()
    got = run_onnx(onnx_bytes(program), images)
    assert got.shape == (3, 5) and (got[:, [0, 2, 4]] == 0).all()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("package", ["onnxscript", "onnx"])
def test_without_the_extra_one_line_names_it(runs, package, cli, monkeypatch, tmp_path):
    out, records = runs
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    result = cli("export", out / records["cnn"]["run_id"], "--task", "0,1", "--out", tmp_path / "m.onnx")
    assert result.code == 2
    assert result.one_line_error() == (f"error: ONNX export needs the package '{package}': "
                                       "pip install 'modbench[onnx]'")
    assert not (tmp_path / "m.onnx").exists()
