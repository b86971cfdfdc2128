"""The MwT and NeMo authors' checkpoints, mapped onto the zoo: every key placed, the authors' logits kept.

Each checkpoint is the state dict of a re-implementation of the authors' model (``authors_models``:
their module names, their forward pass) with random weights and BatchNorm statistics; the zoo model
loaded with the mapped weights must compute the same logits.
"""

from __future__ import annotations

from collections.abc import Callable

import authors_models as authors
import pytest
import torch
from torch import nn

from bench.errors import DataNotFound, UsageError
from bench.importers.authors import load_authors_checkpoint, map_state_dict
from bench.modular.masking import attach_generators
from bench.plugins.manager import get_plugins

SMALL = {"width": 0.25}
SMALL_VIT = {"width": 0.25, "depth": 2}
CASES = [  # source, zoo model, modular, zoo arguments, the authors' model, zoo BNs filled as identities
    ("mwt", "vgg16", False, SMALL, lambda m: authors.VGG16(10, 0.25, m), []),
    ("mwt", "vgg16", True, SMALL, lambda m: authors.VGG16(10, 0.25, m), []),
    ("nemo", "vgg16", True, SMALL, lambda m: authors.VGG16(10, 0.25, m), []),
    ("mwt", "resnet18", False, SMALL, lambda m: authors.ResNet18(10, 0.25, m), []),
    ("nemo", "resnet18", True, SMALL, lambda m: authors.ResNet18(10, 0.25, m), []),
    ("mwt", "simcnn", False, {**SMALL, "bn": False}, lambda m: authors.SimCNN(10, 0.25, m), []),
    ("mwt", "simcnn", True, SMALL, lambda m: authors.SimCNN(10, 0.25, m), ["features.0.bn"]),
    ("mwt", "rescnn", False, {**SMALL, "bn": False}, lambda m: authors.ResCNN(10, 0.25, m), []),
    ("mwt", "rescnn", True, SMALL, lambda m: authors.ResCNN(10, 0.25, m), ["features.0.bn"]),
    ("nemo", "vit_s", False, SMALL_VIT, lambda m: authors.HFViT(10, 96, 2, 12, m, distilled=False), []),
    ("nemo", "vit_s", True, SMALL_VIT, lambda m: authors.HFViT(10, 96, 2, 12, m, distilled=False), []),
    ("nemo", "deit_s", True, SMALL_VIT, lambda m: authors.HFViT(10, 96, 2, 6, m, distilled=True), []),
]


def randomised(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with random norm weights and BatchNorm statistics (none is an identity)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)
    return model.eval()


def saved(tmp_path, state: dict[str, torch.Tensor]):
    path = tmp_path / "checkpoint.pth"
    torch.save(state, path)
    return path


def zoo_model(name: str, args: dict, modular: bool, num_classes: int = 10) -> nn.Module:
    model = get_plugins().models.get(name).build(num_classes, **args)
    return attach_generators(model) if modular else model


@pytest.mark.parametrize(("source", "model", "modular", "args", "build", "identity_bn"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'modular' if c[2] else 'standard'}" for c in CASES])
def test_a_checkpoint_maps_every_key_and_keeps_the_authors_logits(tmp_path, source, model, modular, args,
                                                                  build: Callable, identity_bn):
    torch.manual_seed(0)
    theirs = randomised(build(modular))
    state, info = load_authors_checkpoint(saved(tmp_path, theirs.state_dict()), source, model, args, 10)
    ours = zoo_model(model, args, modular)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected, got = theirs(x), ours.eval()(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert info["modular"] == modular and info["tensors"] == len(theirs.state_dict())
    assert info["identity_bn"] == identity_bn and info["filled"] == []


def test_map_state_dict_renames_into_the_zoo_layout():
    torch.manual_seed(0)
    theirs = randomised(authors.ResNet18(10, 0.25, modular=True))
    ours = zoo_model("resnet18", SMALL, modular=True)
    mapped = map_state_dict("mwt", "resnet18", theirs.state_dict(), ours)
    assert set(mapped) == set(ours.state_dict())
    assert torch.equal(mapped["features.1.body.0.generator.fc1.weight"],
                       theirs.state_dict()["layer1.0.conv1.mask_generator.mask_generator.0.weight"])
    assert torch.equal(mapped["features.3.shortcut.bn.running_var"],
                       theirs.state_dict()["layer2.0.downsample.0.bn.running_var"])
    assert torch.equal(mapped["classifier.0.bias"], theirs.state_dict()["fc.bias"])


def test_a_data_parallel_prefix_is_removed(tmp_path):
    theirs = randomised(authors.SimCNN(10, 0.25, modular=False))
    prefixed = {f"module.{k}": v for k, v in theirs.state_dict().items()}
    state, _ = load_authors_checkpoint(saved(tmp_path, prefixed), "mwt", "simcnn", {**SMALL, "bn": False}, 10)
    assert torch.equal(state["features.0.conv.weight"], theirs.conv_0.weight)


def vgg_state(**changes) -> dict[str, torch.Tensor]:
    state = dict(authors.VGG16(10, 0.25, modular=False).state_dict())
    for key, value in changes.items():
        state.pop(key) if value is None else state.__setitem__(key, value)
    return state


BAD = [
    ({"features.0.weight": None, "extra.weight": torch.zeros(1)}, "mwt", "vgg16", SMALL, 10,
     "mwt vgg16 checkpoint does not fit the zoo model: checkpoint keys that map nowhere: extra.weight; "
     "zoo keys left unfilled: features.0.conv.weight"),
    ({}, "mwt", "vgg16", SMALL, 100,
     "shapes differ: classifier.6.weight (checkpoint (10, 128), zoo (100, 128)), classifier.6.bias (checkpoint "
     "(10,), zoo (100,)) (its classifier has another number of classes than the data set)"),
    ({}, "mwt", "vgg16", {"width": 0.5}, 10, "(another width or depth: check the model's arguments)"),
    ({}, "cnnsplitter", "vgg16", SMALL, 10, "unknown checkpoint source 'cnnsplitter' (choose mwt or nemo)"),
    ({}, "mwt", "vit", SMALL, 10, "no mwt layout for model 'vit_s' (it has: vgg16, resnet18, simcnn, rescnn); the "
     "MwT baselines on ViTs come from the NeMo code: --source nemo"),
]


@pytest.mark.parametrize(("changes", "source", "model", "args", "classes", "message"), BAD)
def test_a_checkpoint_that_does_not_fit_is_one_line_naming_the_keys(tmp_path, changes, source, model, args, classes,
                                                                    message):
    with pytest.raises(UsageError) as err:
        load_authors_checkpoint(saved(tmp_path, vgg_state(**changes)), source, model, args, classes)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_batchnorms_the_zoo_model_lacks_are_named(tmp_path):
    theirs = authors.SimCNN(10, 0.25, modular=True)
    with pytest.raises(UsageError, match=r"keys that map nowhere: conv_1\.bn\.weight, .*\(the checkpoint has "
                                         r"BatchNorms the zoo model lacks: bn=true\?\)"):
        load_authors_checkpoint(saved(tmp_path, theirs.state_dict()), "mwt", "simcnn", {**SMALL, "bn": False}, 10)


def test_a_vit_without_attention_masks_leaves_the_zoo_generators_unfilled(tmp_path):
    """NeMo's trainer masks q, k and v only with --replace_attention; the zoo's masked ViT always does."""
    state = authors.HFViT(10, 96, 2, 12, masked=True, distilled=False).state_dict()
    state = {k: v for k, v in state.items() if not ("attention.attention" in k and "mask_generator" in k)}
    with pytest.raises(UsageError, match=r"zoo keys left unfilled: blocks\.1\.attn\.q\.generator\.fc1\.weight"):
        load_authors_checkpoint(saved(tmp_path, state), "nemo", "vit_s", SMALL_VIT, 10)


class NotTensors:
    """Something a checkpoint must never make torch.load build."""


@pytest.mark.parametrize(("content", "error", "message"), [
    (None, DataNotFound, "checkpoint .*absent.pth not found"),
    ([torch.zeros(2)], UsageError, r"is not a state dict of tensors \(torch.save\(model.state_dict\(\)\)\)"),
    ({"x": NotTensors()}, UsageError, r"is not a state dict of tensors \(UnpicklingError: "),
])
def test_files_that_are_not_state_dicts(tmp_path, content, error, message):
    path = tmp_path / "absent.pth"
    if content is not None:
        torch.save(content, path)
    with pytest.raises(error, match=message) as err:
        load_authors_checkpoint(path, "mwt", "vgg16", SMALL, 10)
    assert "\n" not in str(err.value)
