"""A module rounded up to a channel multiple: the option end to end, recorded as its own retention."""

from __future__ import annotations

import torch

from bench.modular.rounding import task_keep
from bench.pipeline import store
from bench.pipeline.runner import run_grid
from bench.protocol.modules import ModuleSet
from bench.testing import make_tiny_grid


def test_task_keep_rounds_each_layer_of_the_union_by_frequency():
    masks = torch.tensor([[1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool)  # two layers of 4 and 2
    frequencies = torch.tensor([[0.9, 0.1, 0.5, 0.2, 1.0, 0.0], [0.1, 0.3, 0.4, 0.0, 1.0, 0.9]])
    modules = ModuleSet("kernel", ["a", "b"], [4, 2], masks, frequencies=frequencies)
    assert task_keep(modules, [0, 1]).tolist() == [True, False, False, False, True, True]
    assert task_keep(modules, [0, 1], 2).tolist() == [True, False, True, False, True, True]  # unit 2: mean 0.45


def test_a_rounded_module_keeps_multiples_of_eight_and_says_so(tmp_path):
    out = tmp_path / "runs"
    plain = {r["method"]: r for r in run_grid(make_tiny_grid(out, methods="mwt"))}["mwt"]
    rounded = {r["method"]: r for r in run_grid(make_tiny_grid(out, methods="mwt", sets=["mwt.channel_multiple=8"]))
               }["mwt"]
    assert rounded["run_id"] != plain["run_id"] and rounded["run_id"].split("/")[:-1] == plain["run_id"].split("/")[:-1]
    (task,), (plain_task,) = rounded["tasks"], plain["tasks"]
    assert "retention_rounded" not in plain_task
    assert task["retention"] == plain_task["retention"] and task["retention_rounded"] >= task["retention"]
    assert task["params"] >= plain_task["params"]
    rounded_widths, plain_widths = conv_widths(out, rounded), conv_widths(out, plain)
    assert any(width % 8 for width in plain_widths)  # else rounding would have nothing to do
    assert all(width % 8 == 0 for width in rounded_widths)
    assert all(r >= w for r, w in zip(rounded_widths, plain_widths, strict=True))


def conv_widths(out, record) -> list[int]:
    """The output channels of every convolution of a record's reused module (task 0,1), read from its stored weights."""
    folder = out / record["run_id"]
    state = store.load_tensors(folder / "0-1.pt", store.read_json(folder / "0-1.json")["sha256"])
    return [tensor.shape[0] for name, tensor in state.items() if tensor.dim() == 4]
