"""Physical extraction: the extracted module computes what the fixed-mask modular model computes."""

from __future__ import annotations

import copy

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from bench.models.cnn import CNN, mobilenetv2, rescnn, resnet18, simcnn, vgg16
from bench.models.layers import InvertedUnit, units
from bench.models.vit import deit_s, vit_s
from bench.modular.extract import extract
from bench.modular.layers import ExtractedBlock, ExtractedResidual, ExtractedViT
from bench.modular.masking import FixedMask, attach_generators, fix_masks, maskable_units, remove_generators

CNNS = {
    "vgg16": lambda: vgg16(10, width=0.25),
    "simcnn": lambda: simcnn(10, width=0.25),
    "simcnn_nobn": lambda: simcnn(10, width=0.25, bn=False),
    "rescnn": lambda: rescnn(10, width=0.25),
    "rescnn_nobn": lambda: rescnn(10, width=0.25, bn=False),
    "resnet18": lambda: resnet18(10, width=0.25),
    "mobilenetv2": lambda: mobilenetv2(10, width=0.25),
}
VITS = {
    "vit_s": lambda: vit_s(10, width=0.25, depth=4),
    "deit_s": lambda: deit_s(10, width=0.25, depth=4),
}
TOL = 1e-4


def randomised(model: nn.Module) -> nn.Module:
    """``model`` with non-trivial biases, BN statistics and LayerNorm affines (in place)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0.0, 0.05)
            elif isinstance(m, nn.Linear) and model.family == "cnn":
                m.reset_parameters()  # uniform +-1/sqrt(in), biases included: logits of order 1
            elif isinstance(m, (nn.Linear, nn.LayerNorm)):
                m.weight.add_(torch.randn_like(m.weight), alpha=0.1)
                m.bias.normal_(0.0, 0.1)
    return model


def random_keep(model: nn.Module, seed: int = 0, share: float = 0.4) -> dict[str, torch.Tensor]:
    """A seeded keep mask for every maskable unit: about ``share`` kept, at least one."""
    gen = torch.Generator().manual_seed(seed)
    keep = {}
    for name, unit in maskable_units(model):
        mask = torch.rand(unit.num_units, generator=gen) < share
        mask[torch.randint(unit.num_units, (1,), generator=gen)] = True
        keep[name] = mask
    return keep


def modular(build) -> nn.Module:
    torch.manual_seed(0)
    return attach_generators(randomised(build())).eval()


def images(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def assert_equivalent(model: nn.Module, keep: dict[str, torch.Tensor], extracted: nn.Module) -> None:
    reference = fix_masks(copy.deepcopy(model), keep).eval()
    x = images()
    with torch.no_grad():
        expected, got = reference(x), extracted.eval()(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < TOL


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops(model: nn.Module) -> float:
    analysis = FlopCountAnalysis(model.eval(), images(1))
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()


def indices(mask: torch.Tensor | None, size: int) -> set[int]:
    return set(range(size)) if mask is None else set(mask.nonzero().flatten().tolist())


def conv_params(unit: nn.Module, cin: int, cout: int) -> int:
    k = unit.conv.kernel_size
    bias = cout if unit.conv.bias is not None else 0
    return cout * cin * k[0] * k[1] + bias + (2 * cout if unit.bn is not None else 0)


def expected_plain_cnn_params(model: nn.Module, keep: dict[str, torch.Tensor]) -> int:
    """VGG-style chain: each conv reads the previous conv's kept channels; 1x1 maps into the classifier."""
    total, cin = 0, 3
    for name, unit in units(model):
        cout = len(indices(keep.get(name), unit.num_units))
        total += conv_params(unit, cin, cout)
        cin = cout
    first, *rest = [m for m in model.classifier if isinstance(m, nn.Linear)]
    return total + first.out_features * (cin + 1) + sum(num_params(m) for m in rest)


def expected_resnet_params(model: nn.Module, keep: dict[str, torch.Tensor]) -> int:
    """ResNet: a block's output channels are the union of its body's and its shortcut's."""
    stem = model.features[0]
    live = set(range(stem.num_units))
    total = conv_params(stem, 3, len(live))
    for i, block in enumerate(model.features[1:-1], start=1):
        a = indices(keep.get(f"features.{i}.body.0"), block.body[0].num_units)
        b = indices(keep.get(f"features.{i}.body.1"), block.body[1].num_units)
        total += conv_params(block.body[0], len(live), len(a)) + conv_params(block.body[1], len(a), len(b))
        shortcut = live
        if block.shortcut is not None:
            shortcut = indices(keep.get(f"features.{i}.shortcut"), block.shortcut.num_units)
            total += conv_params(block.shortcut, len(live), len(shortcut))
        live = b | shortcut
    fc = model.classifier[0]
    return total + fc.out_features * (len(live) + 1)


@pytest.mark.parametrize("name", list(CNNS))
def test_cnn_extraction_matches_fixed_masks(name):
    model = modular(CNNS[name])
    before = copy.deepcopy(model.state_dict())
    keep = random_keep(model)
    extracted = extract(model, keep)
    assert isinstance(extracted, CNN) and extracted.family == "cnn"
    assert_equivalent(model, keep, extracted)
    assert not any(isinstance(m, FixedMask) for m in extracted.modules())
    assert all(u.generator is None for _, u in units(extracted))
    assert all(u.generator is not None for _, u in maskable_units(model))  # source untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert flops(extracted) < flops(remove_generators(copy.deepcopy(model)))


@pytest.mark.parametrize("name", list(CNNS) + list(VITS))
def test_keep_all_gives_the_standard_model(name):
    model = modular({**CNNS, **VITS}[name])
    keep = {n: torch.ones(u.num_units, dtype=torch.bool) for n, u in maskable_units(model)}
    standard = remove_generators(copy.deepcopy(model))
    extracted = extract(model, keep).eval()
    x = images()
    with torch.no_grad():
        assert (extracted(x) - standard(x)).abs().max() < TOL
    assert num_params(extracted) == num_params(standard)


@pytest.mark.parametrize(("name", "expected"), [("vgg16", expected_plain_cnn_params),
                                                ("resnet18", expected_resnet_params)])
def test_cnn_parameter_count_follows_the_kept_channels(name, expected):
    model = modular(CNNS[name])
    keep = random_keep(model, seed=3)
    assert num_params(extract(model, keep)) == expected(model, keep)


def one_hot(size: int, kept: list[int]) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[kept] = True
    return mask


@pytest.mark.parametrize(("block3", "block4", "widths"), [
    ({"body.1": [0, 1], "shortcut": [0, 1, 2, 3, 4, 5]}, [0, 1, 10, 11], (6, 8)),  # shortcut wider
    ({"body.1": [0, 1], "shortcut": [0]}, [0, 1, 7, 9], (2, 4)),  # identity narrower than the body
])
def test_residual_join_keeps_the_union(block3, block4, widths):
    torch.manual_seed(0)
    model = randomised(resnet18(10, width=0.25)).eval()  # features.3: 16 -> 32 with a 1x1 shortcut
    keep = {f"features.3.{unit}": one_hot(32, kept) for unit, kept in block3.items()}
    keep["features.4.body.1"] = one_hot(32, block4)  # features.4: identity shortcut
    extracted = extract(model, keep).eval()
    assert isinstance(extracted.features[3], ExtractedResidual)
    assert (extracted.features[3].width, extracted.features[4].width) == widths
    with torch.no_grad():
        assert extracted.features[:5](images()).shape[1] == widths[1]
    assert_equivalent(model, keep, extracted)


def test_a_kept_mobilenetv2_channel_keeps_its_depthwise_filter():
    model = modular(CNNS["mobilenetv2"])
    keep = random_keep(model, seed=2)
    extracted = extract(model, keep)
    pairs = [(n, u, dict(units(extracted))[n]) for n, u in units(model) if isinstance(u, InvertedUnit)]
    assert len(pairs) == 17 and all(isinstance(small, InvertedUnit) for _, _, small in pairs)
    for name, unit, small in pairs:
        kept = keep[name].nonzero().flatten()
        assert small.depthwise.groups == small.depthwise.in_channels == len(kept)
        assert small.depthwise.stride == unit.depthwise.stride
        assert torch.equal(small.depthwise.weight, unit.depthwise.weight[kept])
        assert torch.equal(small.depthwise_bn.running_mean, unit.depthwise_bn.running_mean[kept])
    assert isinstance(extracted.features[4], nn.Sequential)  # a stride-2 block: no join
    assert isinstance(extracted.features[5], ExtractedResidual)  # its identity join: the union
    union = keep["features.4.1"] | keep["features.5.body.1"]
    assert extracted.features[5].width == int(union.sum())


def vit_keep(model: nn.Module) -> dict[str, torch.Tensor]:
    """Random masks, plus: block 1 head 0 without v dims, head 1 with v dims but no q/k dims;
    block 2 with no q/k dim left in any head."""
    keep = random_keep(model, seed=5)
    hd = model.blocks[1].attn.head_dim
    keep["blocks.1.attn.v"][:hd] = False
    keep["blocks.1.attn.v"][hd] = True
    keep["blocks.1.attn.q"][hd:2 * hd] = False
    half = model.dim // 2
    keep["blocks.2.attn.q"] = one_hot(model.dim, list(range(half)))
    keep["blocks.2.attn.k"] = one_hot(model.dim, list(range(half, model.dim)))
    return keep


@pytest.mark.parametrize("name", list(VITS))
def test_vit_exact_extraction_matches_fixed_masks(name):
    model = modular(VITS[name])
    before = copy.deepcopy(model.state_dict())
    keep = vit_keep(model)
    extracted = extract(model, keep)
    assert isinstance(extracted, ExtractedViT) and extracted.family == "vit"
    assert_equivalent(model, keep, extracted)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert num_params(extracted) < num_params(remove_generators(copy.deepcopy(model)))
    assert len(extracted.blocks[1].attn.v.pos) == int(keep["blocks.1.attn.v"].sum())
    assert extracted.blocks[1].attn.q.heads == model.blocks[1].attn.heads - 1  # head 0 dropped
    assert extracted.blocks[2].attn.q.linear is None
    assert not any(isinstance(m, FixedMask) for m in extracted.modules())


@pytest.mark.parametrize(("widest", "width"), [(5, 8), (8, 8), (11, 16), (16, 16)])
def test_vit_heads_are_padded_to_a_multiple_of_8(widest, width):
    model = modular(VITS["deit_s"])  # head size 16
    keep = random_keep(model, share=0.3)
    head_dim = model.blocks[1].attn.head_dim
    for unit in ("q", "k", "v"):
        keep[f"blocks.1.attn.{unit}"] = keep[f"blocks.1.attn.{unit}"] & False
        keep[f"blocks.1.attn.{unit}"][head_dim:head_dim + widest] = True  # head 1 keeps ``widest`` dims
    extracted = extract(model, keep)
    assert extracted.blocks[1].attn.q.width == extracted.blocks[1].attn.v.width == width
    assert_equivalent(model, keep, extracted)


def test_vit_extraction_keeps_heads_and_trains():
    model = modular(VITS["deit_s"])
    keep = vit_keep(model)
    extracted = extract(model, keep).eval()
    reference = fix_masks(copy.deepcopy(model), keep).eval()
    with torch.no_grad():
        pairs = zip(extracted.forward_heads(images()), reference.forward_heads(images()), strict=True)
        assert all((got - expected).abs().max() < TOL for got, expected in pairs)
    extracted.replace_head(3)
    assert extracted.head_dist is None and not extracted.distilled
    loss = extracted.train()(images()).pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in extracted.parameters())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_vit_blocks_join_the_stream_by_plain_addition_as_the_index_add_join_did(precision):
    """The dense join (full-width out / fc2 weights, zero rows elsewhere) gives the numbers of the former
    compact rows added at their dims, in inference and in training, and runs no index_add."""
    from vit_join import with_index_add_join

    model = modular(VITS["vit_s"])
    extracted = extract(model, random_keep(model, share=0.3))
    former = with_index_add_join(extracted)
    assert sum(isinstance(b, ExtractedBlock) for b in extracted.blocks) == 3
    for grad in (False, True):
        with torch.set_grad_enabled(grad), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            got = extracted.train(grad)(images())
            expected = former.train(grad)(images())
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    with torch.no_grad(), torch.profiler.profile() as trace:
        extracted(images())
    assert not [e.key for e in trace.key_averages() if "index_add" in e.key]


def test_vit_inference_reuses_padded_weights_until_they_change():
    torch.manual_seed(0)
    extracted = extract(modular(VITS["vit_s"]), vit_keep(modular(VITS["vit_s"]))).eval()
    x = images()
    with torch.no_grad():
        first = extracted(x)
        cached = extracted.blocks[1].attn.q._spread_cache["weight"][1]
        assert extracted(x).equal(first) and extracted.blocks[1].attn.q._spread_cache["weight"][1] is cached
    optimizer = torch.optim.SGD(extracted.parameters(), lr=0.1)
    extracted(x).pow(2).sum().backward()
    optimizer.step()
    with torch.no_grad():
        after = extracted(x)
    with torch.enable_grad():
        rebuilt = extracted(x)
    assert not after.equal(first)
    torch.testing.assert_close(after, rebuilt.detach())


def paper_params(model: nn.Module, keep: dict[str, torch.Tensor]) -> int:
    """Parameters of NeMo's module, counted from the masks: narrowed stream, fresh LayerNorms."""
    dim = model.dim
    total = num_params(model.patch_embed) + model.cls_token.numel() + model.pos_embed.numel()
    total += num_params(remove_generators(copy.deepcopy(model.blocks[0])))
    width = dim
    for i in range(1, len(model.blocks)):
        n = {u: int(keep[f"blocks.{i}.{u}"].sum()) for u in ("attn.v", "attn.out", "mlp.fc1", "mlp.fc2")}
        qk = int((keep[f"blocks.{i}.attn.q"] & keep[f"blocks.{i}.attn.k"]).sum())
        total += 2 * width + 2 * (qk * width + qk) + n["attn.v"] * width + n["attn.v"]
        total += n["attn.out"] * (n["attn.v"] + 1) + 2 * n["attn.out"]
        total += n["mlp.fc1"] * (n["attn.out"] + 1) + n["mlp.fc2"] * (n["mlp.fc1"] + 1)
        width = n["mlp.fc2"]
    return total + 2 * width + model.num_classes * (width + 1)


def test_vit_paper_mode_builds_the_reference_module():
    torch.manual_seed(0)
    model = attach_generators(randomised(vit_s(10, width=0.25, depth=3))).eval()
    keep = random_keep(model, seed=7)
    extracted = extract(model, keep, mode="paper")
    assert num_params(extracted) == paper_params(model, keep)
    widths = [int(keep[f"blocks.{i}.mlp.fc2"].sum()) for i in (1, 2)]
    with torch.no_grad():
        x = extracted.tokens(images())
        shapes = []
        for block in extracted.blocks:
            x = block(x)
            shapes.append(x.shape[-1])
    assert shapes == [model.dim, *widths]
    assert extracted.blocks[0].norm1.weight.equal(model.blocks[0].norm1.weight)
    fresh = [extracted.norm, *(n for b in extracted.blocks[1:] for n in (b.norm1, b.norm2))]
    assert all(n.weight.eq(1).all() and n.bias.eq(0).all() for n in fresh)
    assert extracted.norm.normalized_shape == (widths[-1],)
    assert extracted.head.weight.equal(model.head.weight[:, keep["blocks.2.mlp.fc2"]])
    out = extracted.train()(images())
    assert out.shape == (4, 10)
    out.pow(2).sum().backward()
    assert all(p.grad is not None for p in extracted.parameters())
    extracted.replace_head(2)
    assert extracted(images()).shape == (4, 2)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_extracted_modules_export(kind):
    if kind == "cnn":
        model = modular(CNNS["resnet18"])
        keep = random_keep(model)
    else:
        model = modular(VITS["vit_s"])
        keep = vit_keep(model)
    extracted = extract(model, keep).eval()
    program = torch.export.export(extracted, (images(),))
    with torch.no_grad():
        assert (program.module()(images()) - extracted(images())).abs().max() < 1e-5


def test_bad_inputs_are_rejected():
    model = resnet18(10, width=0.25)
    with pytest.raises(ValueError, match="expected"):
        extract(model, {"features.1.body.0": torch.ones(5, dtype=torch.bool)})
    with pytest.raises(ValueError, match="retains no unit"):
        extract(model, {"features.1.body.0": torch.zeros(16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not a unit"):
        extract(model, {"features.99": torch.ones(16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="unknown extraction mode"):
        extract(model, {}, mode="fast")
    with pytest.raises(ValueError, match="paper"):
        extract(model, {}, mode="paper")
    vit = vit_s(10, width=0.25, depth=2)
    with pytest.raises(ValueError, match="block 0"):
        extract(vit, {"blocks.0.attn.q": torch.ones(vit.dim, dtype=torch.bool)}, mode="paper")


def test_unsupported_layer_is_named():
    model = vgg16(10, width=0.25)
    model.features[1] = nn.Identity()
    with pytest.raises(ValueError, match=r"Identity at 'features\.1'"):
        extract(model, {})
