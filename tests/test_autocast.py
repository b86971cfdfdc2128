"""Extracted modules and the activity pass under CPU bfloat16 autocast (the mixed precision of training).

Every kind of extracted model (CNN chains, CNN residual joins, ViT exact and paper, DeiT) runs
forward and backward under autocast, stays close to its float32 output, and sends float32
gradients to every parameter; the activity pass counts the same samples with or without it.
"""

from __future__ import annotations

import pytest
import torch
from test_extract import CNNS, VITS, images, modular, random_keep, vit_keep

from bench.modular.activity import collect_activity
from bench.modular.extract import extract
from bench.modular.masking import attach_generators

KINDS = {  # name -> (builder, extraction mode)
    "simcnn": (CNNS["simcnn"], "exact"),
    "rescnn (identity joins)": (CNNS["rescnn"], "exact"),
    "resnet18 (1x1 shortcut joins)": (CNNS["resnet18"], "exact"),
    "mobilenetv2 (depthwise filters, inverted residuals)": (CNNS["mobilenetv2"], "exact"),
    "vit_s exact": (VITS["vit_s"], "exact"),
    "vit_s paper": (VITS["vit_s"], "paper"),
    "deit_s exact": (VITS["deit_s"], "exact"),
    "deit_s paper": (VITS["deit_s"], "paper"),
}
BF16_TOL = 0.05  # relative to the largest float32 logit: bfloat16 keeps 8 bits of mantissa


def bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def extracted(kind: str) -> torch.nn.Module:
    build, mode = KINDS[kind]
    model = modular(build)
    if mode == "paper":
        keep = {n: m for n, m in random_keep(model).items() if not n.startswith("blocks.0.")}
    else:
        keep = vit_keep(model) if model.family == "vit" else random_keep(model)
    return extract(model, keep, mode=mode)


def close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    return float((got.float() - expected).abs().max()) <= BF16_TOL * float(expected.abs().max())


@pytest.mark.parametrize("kind", list(KINDS))
def test_extracted_module_under_bf16_autocast(kind):
    module = extracted(kind).train()
    with bf16():
        out = module(images())
    out.float().pow(2).mean().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name
    module.eval()
    with torch.no_grad():
        full = module(images())
        with bf16():
            half = module(images())
        again = module(images())  # the padded-weight caches are kept per dtype: float32 again
    assert close(half, full)
    assert again.dtype == torch.float32 and again.equal(full)


def test_padded_vit_weights_are_cached_in_the_autocast_dtype():
    module = extracted("vit_s exact").eval()
    with torch.no_grad(), bf16():
        module(images())
    cached = module.blocks[1].attn.q._spread_cache["weight"][1]
    assert cached.dtype == torch.bfloat16  # cast once, not at every call


@pytest.mark.parametrize(("name", "generators"), [("resnet18", False), ("vit_s", True)])
def test_activity_pass_under_bf16_autocast(name, generators):
    torch.manual_seed(0)
    model = {**CNNS, **VITS}[name]()
    if generators:
        attach_generators(model)
    batches = [(images(8), torch.arange(8) % 4)]
    full = collect_activity(model, batches, 4, 2)
    with bf16():
        half = collect_activity(model, batches, 4, 2)
    assert half.class_totals.equal(full.class_totals)
    assert half.counts.shape == full.counts.shape and half.samples.dtype == torch.bool
    agree = float((half.counts == full.counts).double().mean())
    assert agree > 0.95, agree  # bfloat16 may flip a unit whose mask or mean is within rounding of 0
