"""Reused modules against their models: latency ratios next to FLOPs ratios, and raw inference times.

Run with ``pytest tests/benchmarks/test_module_speed.py --benchmark-only`` (add ``-m cuda`` on a GPU
machine). A module keeps a seeded random share of every maskable layer's units, as extracted
(rounding 1) or with each layer's kept count rounded up to a multiple of 8 by the next most
frequent units (``bench.modular.rounding``). Its ``latency_ratio`` (throughput batch: 128 on a
CPU, 256 on a GPU) is recorded with the goal: at most 1.2 x its FLOPs ratio + 0.1. A ViT module is
also timed with its blocks joining the stream the former way (compact out / fc2 rows added with
``index_add``, ``tests/vit_join.py``): the dense join computes zero rows (more FLOPs) to save the scatter.
"""

from __future__ import annotations

import copy

import pytest
import torch
from vit_join import with_index_add_join

from bench.models.cnn import simcnn, vgg16
from bench.models.vit import vit_s
from bench.modular.extract import extract
from bench.modular.masking import attach_generators, maskable_units, remove_generators
from bench.modular.rounding import rounded_keep
from bench.pipeline.metrics import count_flops, latency_ratios

pytestmark = pytest.mark.benchmark(group="modules")

# case -> (builder, device, throughput batch, precisions)
CASES = {
    "cpu-simcnn-w.5": (lambda: simcnn(10, width=0.5), "cpu", 128, ("fp32",)),
    "cpu-vgg16-w.25": (lambda: vgg16(10, width=0.25), "cpu", 128, ("fp32",)),
    "cpu-vit_s": (lambda: vit_s(10), "cpu", 128, ("fp32",)),
    "gpu-vgg16": (lambda: vgg16(10), "cuda", 256, ("fp32", "bf16")),
    "gpu-vit_s": (lambda: vit_s(10), "cuda", 256, ("fp32", "bf16")),
}


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device(name)


def module_and_model(build, share: float, multiple: int, device: torch.device):
    """(module, model): a module keeping ``share`` of each layer's units, rounded up to ``multiple``."""
    torch.manual_seed(0)
    model = attach_generators(build()).eval()
    gen = torch.Generator().manual_seed(0)
    named = maskable_units(model)
    sizes = [u.num_units for _, u in named]
    keep = torch.rand(sum(sizes), generator=gen) < share
    keep[torch.tensor([0, *sizes[:-1]]).cumsum(0)] = True  # every layer keeps a unit
    keep = rounded_keep(keep, torch.rand(sum(sizes), generator=gen), sizes, multiple)
    masks = dict(zip([n for n, _ in named], keep.split(sizes), strict=True))
    module = extract(model, masks).to(device)
    return module, remove_generators(copy.deepcopy(model)).to(device)


def _params(device: str) -> list:
    marks = [pytest.mark.cuda] if device == "cuda" else []
    return [pytest.param(c, p, marks=marks, id=f"{c}-{p}") for c, spec in CASES.items() if spec[1] == device
            for p in spec[3]]


@pytest.mark.parametrize("multiple", [1, 8], ids=["as-extracted", "rounded-to-8"])
@pytest.mark.parametrize("share", [0.4, 0.9])
@pytest.mark.parametrize(("case", "precision"), _params("cpu") + _params("cuda"))
def test_module_latency_against_flops(benchmark, record_ratio, case, precision, share, multiple):
    build, device, batch, _ = CASES[case]
    module, model = module_and_model(build, share, multiple, _device(device))
    ratios = benchmark.pedantic(latency_ratios, args=(module, model, precision, batch), rounds=1, iterations=1)
    _record_against_flops(record_ratio, module, model, ratios)
    assert ratios["latency_ratio"] > 0 and ratios["latency_ratio_b1"] > 0


def _record_against_flops(record_ratio, module, model, ratios: dict) -> None:
    flops = count_flops(module) / count_flops(model)
    bound = 1.2 * flops + 0.1
    record_ratio("flops_ratio", flops)
    record_ratio("latency_ratio_b1", ratios["latency_ratio_b1"])
    verdict = "within" if ratios["latency_ratio"] <= bound else "OVER"
    record_ratio("latency_ratio", ratios["latency_ratio"], f"{verdict} 1.2 x FLOPs + 0.1 = {bound:.3f}")


@pytest.mark.parametrize("share", [0.4, 0.9])
@pytest.mark.parametrize(("case", "precision"), [p for p in _params("cpu") + _params("cuda") if "vit" in p.id])
def test_vit_module_with_the_former_index_add_join(benchmark, record_ratio, case, precision, share):
    """The same ViT module as ``test_module_latency_against_flops`` (as extracted), its blocks joined the former way."""
    build, device, batch, _ = CASES[case]
    module, model = module_and_model(build, share, 1, _device(device))
    former = with_index_add_join(module)
    ratios = benchmark.pedantic(latency_ratios, args=(former, model, precision, batch), rounds=1, iterations=1)
    _record_against_flops(record_ratio, former, model, ratios)
    assert ratios["latency_ratio"] > 0


def _forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = module(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return out


@pytest.mark.parametrize("what", ["model", "module"])
@pytest.mark.parametrize(("case", "precision"), _params("cpu") + _params("cuda"))
def test_inference(benchmark, what, case, precision):
    """Eager forward passes at the throughput batch: the model, or a module keeping about 40%."""
    build, device, batch, _ = CASES[case]
    module, model = module_and_model(build, 0.4, 1, _device(device))
    net = module if what == "module" else model
    x = torch.randn(batch, 3, 32, 32, device=device)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = benchmark(_forward, net, x)
    assert out.shape == (batch, 10)
