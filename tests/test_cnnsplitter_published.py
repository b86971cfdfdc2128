"""Import of CNNSplitter's published modules from a small fabricated folder of the same format."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.data.builtin import load_synthetic
from bench.errors import BenchError, UsageError
from bench.models.cnn import rescnn, simcnn
from bench.models.layers import ConvUnit, units
from bench.models.spec import ModelSpec
from bench.modular.ensemble import ClassModules
from bench.modular.extract import extract
from bench.modular.published import CHOSEN, IMAGENET_NORM, published_keep
from bench.protocol.method import StageContext, TrainContext
from bench.protocol.recipe import Recipe
from methods.cnnsplitter import CNNSplitter, CNNSplitterHparams

BUILDERS = {"simcnn": simcnn, "rescnn": rescnn}


def conv_names(model: nn.Module) -> list[str]:
    return [name for name, unit in units(model) if isinstance(unit, ConvUnit)]


def authors_state(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """``model``'s weights under the authors' names (conv_<i>, fc_<13..15> / conv_<i>.0, classifier.2)."""
    state = {}
    for i, conv in enumerate(conv_names(model)):
        prefix = f"conv_{i}" if name == "simcnn" else f"conv_{i}.0"
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = (model.get_submodule(conv).conv.weight.detach(),
                                                              model.get_submodule(conv).conv.bias.detach())
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    names = ["fc_13", "fc_14", "fc_15"] if name == "simcnn" else ["classifier.2"]
    for key, linear in zip(names, linears, strict=True):
        state[f"{key}.weight"], state[f"{key}.bias"] = linear.weight.detach(), linear.bias.detach()
    return state


def fabricate(root: Path, name: str, seed: int = 0) -> tuple[Path, nn.Module, list, list]:
    """A published folder for a width-0.125 no-BN model: (folder, the model, importance, chosen chromosomes)."""
    torch.manual_seed(seed)
    model = BUILDERS[name](10, width=0.125, bn=False)
    folder = root / f"{name}_cifar10"
    (folder / "ga").mkdir(parents=True)
    (folder / "kernel_importance").mkdir()
    torch.save(authors_state(model, name), folder / "entire_model.pth")
    rng = np.random.default_rng(seed)
    widths = [model.get_submodule(c).num_units for c in conv_names(model)]
    importance = [[rng.random(w).round(2).tolist() for w in widths] for _ in range(10)]  # ties on purpose
    with open(folder / "kernel_importance" / "avg_L1.pkl", "wb") as f:
        pickle.dump(importance, f)
    generation, rows = CHOSEN[folder.name]
    genes = 10 * (len(widths) - (3 if name == "rescnn" else 0))  # every layer < 256 kernels: 10 groups
    chosen = []
    for c, row in enumerate(rows):
        population = rng.integers(0, 2, size=(row + 1, genes)).astype(np.float64)
        population[row, ::10] = 1  # no layer all zero (where the authors and modbench differ)
        chosen.append(population[row])
        with open(folder / "ga" / f"gen_{generation}_exp_{c}_pop.pkl", "wb") as f:
            pickle.dump(population, f)
    return folder, model, importance, chosen


def authors_decode(chromosome, importance_of_class, layers: list[list[int]], widths: list[int]) -> list[set[int]]:
    """The authors' decoding, restated with numpy: per gene layer, the sorted kernels cut by array_split."""
    kept = [set() for _ in widths]
    start = 0
    for convs in layers:
        ranked = sorted(range(widths[convs[-1]]), key=lambda k: importance_of_class[convs[-1]][k], reverse=True)
        groups = np.array_split(np.array(ranked), 10)
        chosen = {int(k) for g, group in enumerate(groups) if chromosome[start + g] == 1 for k in group}
        for conv in convs:
            kept[conv] = chosen
        start += 10
    return kept


GENE_LAYERS = {
    "simcnn": [[i] for i in range(13)],
    "rescnn": [[0], [2], [1, 3], [4], [6], [5, 7], [8], [10], [9, 11]],
}


@pytest.mark.parametrize("name", ["simcnn", "rescnn"])
def test_published_chromosomes_decode_as_the_authors_decode_them(tmp_path, name):
    folder, model, importance, chosen = fabricate(tmp_path, name)
    keep = published_keep(folder, model, name, 10)
    widths = [model.get_submodule(c).num_units for c in conv_names(model)]
    for c in range(10):
        expected = authors_decode(chosen[c], importance[c], GENE_LAYERS[name], widths)
        got = [set(mask[c].nonzero().flatten().tolist()) for mask in keep.values()]
        assert got == expected


def contexts(folder: Path, name: str, data=None) -> tuple[TrainContext, StageContext]:
    data = data or dataclasses.replace(load_synthetic(size=200, classes=10, test_size=40), mean=IMAGENET_NORM[0],
                                       std=IMAGENET_NORM[1])
    spec = ModelSpec(name, "cnn", BUILDERS[name], name)
    args = {"width": 0.125, "bn": False}
    hparams = CNNSplitterHparams(published=str(folder))
    recipe = Recipe(epochs=1)
    train = TrainContext(spec, args, data, torch.device("cpu"), recipe, hparams, 0, fit=None, task_loss=None,
                         new_model=lambda: BUILDERS[name](10, **args), model=BUILDERS[name](10, **args))
    stage = StageContext(spec, data, torch.device("cpu"), recipe, hparams, 0.9, activity=lambda: None)
    return train, stage


def test_published_modules_reuse_the_published_weights_and_kernels(tmp_path):
    folder, original, _, _ = fabricate(tmp_path, "rescnn")
    train, stage = contexts(folder, "rescnn")
    method = CNNSplitter()
    trained = method.train(train)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(trained.model.eval()(x), original.eval()(x))
    modules = method.modularize(stage, trained)
    keep = published_keep(folder, trained.model, "rescnn", 10)
    assert modules.layers == conv_names(original)[1:]  # the first conv lies outside every ModuleSet
    composed = method.compose(stage, trained, modules, [4, 1])
    assert isinstance(composed, ClassModules)
    with torch.no_grad():
        first = extract(trained.model, {n: mask[4] for n, mask in keep.items()})
        assert torch.allclose(composed(x)[:, 4], first(x)[:, 4], atol=1e-6)
    assert composed.class_modules[0].features[0].conv.out_channels == int(keep[conv_names(original)[0]][4].sum())


def test_the_cell_must_be_a_no_bn_model_on_imagenet_normalised_images(tmp_path):
    folder, _, _, _ = fabricate(tmp_path, "simcnn")
    train, _ = contexts(folder, "simcnn", data=load_synthetic(size=200, classes=10, test_size=40))
    with pytest.raises(UsageError, match="ImageNet"):
        CNNSplitter().train(train)
    train, _ = contexts(folder, "simcnn")
    with pytest.raises(UsageError, match="bn=false"):
        CNNSplitter().train(dataclasses.replace(train, model_args={"width": 0.125}))
    folder = folder.rename(tmp_path / "rescnn_svhn")
    train, _ = contexts(folder, "simcnn")
    with pytest.raises(UsageError, match="rescnn modules; this cell's model is simcnn"):
        CNNSplitter().train(train)
    train, _ = contexts(folder.rename(tmp_path / "simcnn_mnist"), "simcnn")
    with pytest.raises(UsageError, match="unknown published folder 'simcnn_mnist'"):
        CNNSplitter().train(train)


def test_weights_of_another_shape_fail_in_one_line_naming_the_file(tmp_path):
    folder, _, _, _ = fabricate(tmp_path, "simcnn")
    state = torch.load(folder / "entire_model.pth", weights_only=True)
    state["fc_15.weight"] = torch.zeros(5, state["fc_15.weight"].shape[1])
    torch.save(state, folder / "entire_model.pth")
    train, _ = contexts(folder, "simcnn")
    fit = r"entire_model\.pth does not fit .*classifier\.6\.weight \(checkpoint \(5, 64\)"
    with pytest.raises(BenchError, match=fit) as info:
        CNNSplitter().train(train)
    assert "\n" not in str(info.value)


def test_a_truncated_pickle_fails_in_one_line_naming_the_file(tmp_path):
    folder, model, _, _ = fabricate(tmp_path, "simcnn")
    path = folder / "ga" / "gen_123_exp_3_pop.pkl"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(BenchError, match=r"gen_123_exp_3_pop\.pkl") as info:
        published_keep(folder, model, "simcnn", 10)
    assert "\n" not in str(info.value)


class RunsCode:
    """A pickle payload that would run a shell command when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_whose_payload_would_run_code_never_runs_it(tmp_path):
    folder, model, _, _ = fabricate(tmp_path, "simcnn")
    marker = tmp_path / "it-ran"
    path = folder / "kernel_importance" / "avg_L1.pkl"
    with open(path, "wb") as f:
        pickle.dump([[RunsCode(marker)]], f)
    with pytest.raises(BenchError, match=r"avg_L1\.pkl: .*system") as info:
        published_keep(folder, model, "simcnn", 10)
    assert not marker.exists()
    assert "\n" not in str(info.value)


def test_values_out_of_range_are_refused(tmp_path):
    folder, model, importance, _ = fabricate(tmp_path, "simcnn")
    importance[2][5][0] = -1.0
    with open(folder / "kernel_importance" / "avg_L1.pkl", "wb") as f:
        pickle.dump(importance, f)
    with pytest.raises(BenchError, match="negative"):
        published_keep(folder, model, "simcnn", 10)
    folder, model, _, _ = fabricate(tmp_path / "again", "simcnn")
    with open(folder / "ga" / "gen_123_exp_7_pop.pkl", "wb") as f:
        pickle.dump(np.full((111, 130), 2.0), f)
    with pytest.raises(BenchError, match=r"gen_123_exp_7_pop\.pkl: genes must be 0 or 1"):
        published_keep(folder, model, "simcnn", 10)
