"""Speed benchmarks (pytest-benchmark): training steps, modularization pass, module inference.

Run with ``pytest tests/benchmarks --benchmark-only`` (add ``-m cuda`` on a GPU machine). They
report numbers; the assertions only check that what was timed computed something sensible.
"""

import pytest
import torch
import torch.nn.functional as F

from bench.models.cnn import simcnn, vgg16
from bench.models.vit import vit_s
from bench.modular.activity import collect_activity
from bench.modular.extract import extract
from bench.modular.masking import attach_generators, current_masks, maskable_units
from methods.mwt import cohesion_coupling_loss
from methods.nemo import contrastive_mask_loss

pytestmark = pytest.mark.benchmark(group="modbench")


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device(name)


def _step(model, optimizer, x, y, mask_loss=None):
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        loss = F.cross_entropy(model(x), y)
        if mask_loss is not None:
            loss = loss + mask_loss(current_masks(model), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return loss.item()


MASK_LOSSES = {
    "standard": None,
    "mwt": lambda masks, y: sum(cohesion_coupling_loss(masks, y)),
    "nemo": lambda masks, y: contrastive_mask_loss(masks, y, 0.2),
}


def _training_step(benchmark, build, method, device, batch):
    torch.manual_seed(0)
    model = build()
    if method != "standard":
        attach_generators(model)
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    loss = benchmark(_step, model, optimizer, x, y, MASK_LOSSES[method])
    assert torch.isfinite(torch.tensor(loss))


@pytest.mark.parametrize("method", list(MASK_LOSSES))
def test_cpu_training_step_small_cnn(benchmark, method):
    _training_step(benchmark, lambda: simcnn(10, width=0.25), method, _device("cpu"), 64)


@pytest.mark.parametrize("method", list(MASK_LOSSES))
def test_cpu_training_step_small_vit(benchmark, method):
    _training_step(benchmark, lambda: vit_s(10, width=0.25, depth=4), method, _device("cpu"), 32)


@pytest.mark.cuda
@pytest.mark.parametrize("method", list(MASK_LOSSES))
def test_gpu_training_step_vgg16(benchmark, method):
    _training_step(benchmark, lambda: vgg16(10), method, _device("cuda"), 128)


@pytest.mark.cuda
@pytest.mark.parametrize("method", list(MASK_LOSSES))
def test_gpu_training_step_vit_s(benchmark, method):
    _training_step(benchmark, lambda: vit_s(10), method, _device("cuda"), 128)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_activity_pass(benchmark, device):
    torch.manual_seed(0)
    model = attach_generators(simcnn(10, width=0.25)).to(_device(device))
    batches = [(torch.randn(256, 3, 32, 32, device=device), torch.randint(0, 10, (256,), device=device))
               for _ in range(4)]
    stats = benchmark(collect_activity, model, batches, 10, 64)
    assert int(stats.class_totals.sum()) == 1024


def _module_forward(module, x):
    out = module(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return out


# name -> (builder, batch): two small test models, and two full-size ones timed on the GPU only.
INFERENCE_MODELS = {
    "simcnn-w.25": (lambda: simcnn(10, width=0.25), 32),
    "vit-d4-w.25": (lambda: vit_s(10, width=0.25, depth=4), 32),
    "vgg16": (lambda: vgg16(10), 256),
    "vit_s": (lambda: vit_s(10), 256),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(INFERENCE_MODELS))
@pytest.mark.parametrize("what", ["model", "module"])
def test_inference(benchmark, what, device, name):
    """A full model against a module extracted with about 40% of each layer's units kept."""
    build, batch = INFERENCE_MODELS[name]
    if device == "cpu" and batch > 32:
        pytest.skip("full-size models are timed on the GPU only")
    torch.manual_seed(0)
    model = build().eval()
    if what == "module":
        attach_generators(model)
        keep = {n: torch.rand(u.num_units) < 0.4 for n, u in maskable_units(model)}
        model = extract(model, keep).eval()
    module = model.to(_device(device))
    x = torch.randn(batch, 3, 32, 32, device=device)
    with torch.no_grad():
        out = benchmark(_module_forward, module, x)
    assert out.shape == (batch, 10)
