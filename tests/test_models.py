"""Every registered model builds, runs forward and backward at a tiny size; the zoo's sizes are exact."""

import pytest
import torch

from bench.errors import UsageError
from bench.models.cnn import mobilenetv2, rescnn, simcnn, vgg16
from bench.modular.masking import attach_generators, current_masks, maskable_units, remove_generators
from bench.pipeline.metrics import count_flops, count_params, flops_by_operator
from bench.plugins.manager import get_plugins

TINY = {"cnn": {"width": 0.125}, "vit": {"width": 0.125, "depth": 2}}


def _registered() -> list[str]:
    return list(get_plugins().models)


@pytest.mark.parametrize("name", _registered())
@pytest.mark.parametrize("masked", [False, True])
def test_every_model_runs_forward_and_backward(name, masked):
    spec = get_plugins().models.get(name)
    torch.manual_seed(0)
    model = spec.build(7, **TINY[spec.family])
    if masked:
        attach_generators(model)
    logits = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 7)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    if masked:
        masks = current_masks(model)
        assert len(masks) == len(maskable_units(model)) > 0
        assert all(((m >= 0) & (m < 1)).all() for m in masks)


@pytest.mark.parametrize("name,build,expected", [
    ("vgg16", lambda: vgg16(10), 314.3e6),
    ("simcnn:bn=false", lambda: simcnn(10, bn=False), 313.7e6),
    ("rescnn:bn=false", lambda: rescnn(10, bn=False), 431.2e6),
])
def test_zoo_flops_match_the_published_counts(name, build, expected):
    assert count_flops(build()) == pytest.approx(expected, abs=0.05e6)


def test_mobilenetv2_flops_count_every_conv_depthwise_included():
    model = mobilenetv2(10).eval()
    by_hand = []

    def multiply_adds(conv, _inputs, out):  # each output value reads in_channels / groups * k * k inputs
        by_hand.append(out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1])

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [c.register_forward_hook(multiply_adds) for c in convs]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    depthwise = sum(c.groups > 1 for c in convs)
    # the stem, each block's expansion, depthwise and projection, 4 conv shortcuts, the head
    assert depthwise == 17 and len(by_hand) == len(convs) == 1 + 17 * 3 + 4 + 1
    counted = flops_by_operator(model)
    assert counted["conv"] == sum(by_hand) == 91_142_144
    assert count_params(model) == 2_296_922  # pytorch-cifar's MobileNetV2


def test_masking_policy():
    models = get_plugins().models
    vgg = models.get("vgg16").build(10)
    assert len(maskable_units(vgg)) == 12 and sum(u.num_units for _, u in maskable_units(vgg)) == 4160
    resnet = models.get("resnet18").build(10)
    names = [n for n, _ in maskable_units(resnet)]
    assert len(names) == 19 and sum("shortcut" in n for n in names) == 3  # 16 block convs + 3 downsamples
    vit = models.get("vit_s").build(10, depth=3)
    names = [n for n, _ in maskable_units(vit)]
    assert len(names) == 12 and all(not n.startswith("blocks.0.") for n in names)


def test_standard_model_is_the_modular_model_without_generators():
    torch.manual_seed(0)
    plain = simcnn(10, width=0.25)
    modular = remove_generators(attach_generators(simcnn(10, width=0.25)))
    assert count_params(plain) == count_params(modular)
    assert plain.state_dict().keys() == modular.state_dict().keys()


def test_vit_alias_and_model_arguments():
    models = get_plugins().models
    assert models.get("vit") is models.get("vit_s")
    spec = models.get("vgg16")
    assert spec.canonical_args({"width": 1}) == {}  # the default, as an int: same model as plain vgg16
    assert spec.canonical_args({"width": 0.5}) == {"width": 0.5}
    with pytest.raises(UsageError, match="takes no argument 'depth'"):
        spec.canonical_args({"depth": 4})
    with pytest.raises(UsageError, match="should be a float"):
        spec.canonical_args({"width": "wide"})


def test_vit_dimensions():
    vit = get_plugins().models.get("vit_s").build(10)
    block = vit.blocks[0]
    assert (vit.dim, len(vit.blocks), block.attn.heads, block.mlp.fc1.out_features) == (384, 12, 12, 1536)
    deit = get_plugins().models.get("deit_s").build(10)
    assert deit.blocks[0].attn.heads == 6 and deit.distilled
    assert deit.pos_embed.shape[1] == 64 + 2


@pytest.mark.parametrize("name", ["simcnn", "vgg16", "resnet18", "rescnn", "mobilenetv2"])
def test_a_cnn_without_gradients_computes_channels_last_and_the_same_logits(name):
    torch.manual_seed(0)
    model = get_plugins().models.get(name).build(10, width=0.125).eval()
    seen = []
    model.features[0].conv.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(3, 3, 32, 32)
    with_grad = model(x)
    with torch.inference_mode():
        without = model(x)
    assert seen == [False, True]  # training's layout with gradients, channels-last without
    torch.testing.assert_close(without, with_grad.detach(), rtol=1e-4, atol=1e-5)
