"""Speed benchmarks (pytest-benchmark): modular training steps against the standard step, activity pass.

Run with ``pytest tests/benchmarks --benchmark-only`` (add ``-m cuda`` on a GPU machine). A step
is what the training loop does: the task loss and the method's loss on the masks (MwT, NeMo) or
on the recorded activations (MODA) (under bfloat16 autocast on a GPU), the logged unit rate,
backward, an SGD step over the model and generator groups. Each modular step records its time
over the standard step of the same case (goal: 1.3x on CNNs, 1.5x on ViTs), and MODA's over
MwT's (its authors report 22% less training time than MwT); the GPU cases also run with the loss
function under ``torch.compile``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.models.cnn import simcnn, vgg16
from bench.models.vit import vit_s
from bench.modular.activity import collect_activity
from bench.modular.masking import attach_generators, current_masks, generator_parameters
from bench.modular.signals import UnitRecorder, activation_units
from bench.modular.similarity import unit_rate
from methods.moda import MODAHparams, moda_loss
from methods.mwt import MwT
from methods.nemo import NeMo

pytestmark = pytest.mark.benchmark(group="modbench")

METHODS = {"standard": None, "mwt": MwT(), "nemo": NeMo(), "moda": None}
# case -> (builder, batch, device, goal for the masked steps over the standard step)
STEP_CASES = {
    "cpu-simcnn-w.5": (lambda: simcnn(10, width=0.5), 64, "cpu", 1.3),
    "cpu-vit-d4-w.25": (lambda: vit_s(10, width=0.25, depth=4), 64, "cpu", 1.5),
    "gpu-vgg16": (lambda: vgg16(10), 128, "cuda", 1.3),
    "gpu-vit_s": (lambda: vit_s(10), 128, "cuda", 1.5),
}
_MEDIANS: dict[tuple[str, str, bool], float] = {}  # (case, method, compiled) -> median seconds


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device(name)


def _step_fn(case: str, method: str, compiled: bool):
    """A zero-argument training step of ``method`` on ``case``'s model and a fixed batch."""
    build, batch, device, _ = STEP_CASES[case]
    device = _device(device)
    torch.manual_seed(0)
    model = build()
    masked = METHODS[method]
    if masked is not None:
        attach_generators(model)
    model = model.to(device)
    params, generators = generator_parameters(model)
    optimizer = torch.optim.SGD([{"params": params}, {"params": generators}], lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    recorder = UnitRecorder(activation_units(model)) if method == "moda" else None  # on the model while it lives

    def loss_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = F.cross_entropy(model(x), y)
        if recorder is not None:
            extra, logs = moda_loss(recorder.last(), y, MODAHparams())
            return loss + extra, logs["unit_rate"]
        if masked is None:
            return loss, loss.detach()
        masks = current_masks(model)
        extra, _ = masked.mask_loss(masks, y, masked.Hparams(), model.family)
        return loss + extra, unit_rate(masks)

    loss_fn = torch.compile(loss_fn) if compiled else loss_fn

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = loss_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return loss.detach()

    return step


def _case_params(device: str) -> list:
    marks = [pytest.mark.cuda] if device == "cuda" else []
    return [pytest.param(c, marks=marks) for c, spec in STEP_CASES.items() if spec[2] == device]


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.cuda)], ids=["eager", "compiled"])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", _case_params("cpu") + _case_params("cuda"))
def test_training_step(benchmark, record_ratio, case, method, compiled):
    if compiled and STEP_CASES[case][2] == "cpu":
        pytest.skip("compiled steps are timed on the GPU")
    step = _step_fn(case, method, compiled)
    rounds = 10 if STEP_CASES[case][2] == "cpu" else 50
    loss = benchmark.pedantic(step, warmup_rounds=3, rounds=rounds)
    assert torch.isfinite(loss)
    median = benchmark.stats.stats.median if benchmark.stats else None
    if median is None:
        return
    _MEDIANS[case, method, compiled] = median
    if method != "standard" and (case, "standard", compiled) in _MEDIANS:
        ratio, goal = median / _MEDIANS[case, "standard", compiled], STEP_CASES[case][3]
        record_ratio("step_vs_standard", ratio, f"goal {goal}x: {'met' if ratio <= goal else 'MISSED'}")
    if method == "moda" and (case, "mwt", compiled) in _MEDIANS:
        ratio = median / _MEDIANS[case, "mwt", compiled]
        record_ratio("step_vs_mwt", ratio, "MODA's authors: 0.78x (22% less training time than MwT)")


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_activity_pass(benchmark, device):
    torch.manual_seed(0)
    model = attach_generators(simcnn(10, width=0.25)).to(_device(device))
    batches = [(torch.randn(256, 3, 32, 32, device=device), torch.randint(0, 10, (256,), device=device))
               for _ in range(4)]
    stats = benchmark(collect_activity, model, batches, 10, 64)
    assert int(stats.class_totals.sum()) == 1024
