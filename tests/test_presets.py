"""Presets resolve a usable recipe and valid hyperparameters for every cell; ``reference`` gives each
model the authors' optimizer, learning rates and fine-tuning, and the records of a run say so."""

from __future__ import annotations

import dataclasses

import pytest

from bench.grid.presets import PRESETS, method_overrides, recipe_for
from bench.grid.presets.reference import FINETUNING, model_kind
from bench.plugins.manager import get_plugins

DATASETS = ("digits", "cifar10", "svhn")
MODELS = ("simcnn", "rescnn", "vgg16", "resnet18", "mobilenetv2", "vit_s", "deit_s")


def _resolve(preset: str, method: str, model: str, dataset: str, args: dict | None = None):
    plugins = get_plugins()
    spec = plugins.models.get(model)
    recipe = recipe_for(preset, method, spec, args or {}, dataset)
    hparams = plugins.methods.get(method).hparams(spec)
    if dataclasses.is_dataclass(hparams):
        hparams = dataclasses.replace(hparams, **method_overrides(preset, method, spec, args or {}, dataset))
    return recipe, hparams


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_resolves_every_cell(preset):
    for model in MODELS:
        for method in ("standard", "mwt", "nemo", "moda"):
            for dataset in DATASETS:
                recipe, _ = _resolve(preset, method, model, dataset)  # the hparams dataclass checks its values
                recipe.check()


def test_reference_trains_every_model_with_the_authors_sgd():
    for model in MODELS:
        for method in ("standard", "mwt", "nemo"):
            recipe, _ = _resolve("reference", method, model, "cifar10")
            assert (recipe.optimizer, recipe.lr, recipe.momentum, recipe.nesterov) == ("sgd", 0.05, 0.9, True)
            assert (recipe.weight_decay, recipe.warmup_epochs, recipe.schedule) == (0.0, 0, "cosine")


def test_reference_no_bn_cnns_keep_cnnsplitter_s_recipe():
    recipe, _ = _resolve("reference", "standard", "simcnn", "cifar10", {"bn": False})
    assert recipe == dataclasses.replace(PRESETS["paper"].recipes["cnn_nobn"], activity_split="train_full",
                                         activity_augment=True)


def test_reference_epochs_follow_the_authors_per_model_and_role():
    epochs = {(m, role): _resolve("reference", role, m, "cifar10")[0].epochs
              for m in ("simcnn", "vit_s", "deit_s") for role in ("standard", "nemo")}
    assert epochs == {("simcnn", "standard"): 200, ("simcnn", "nemo"): 200, ("vit_s", "standard"): 50,
                      ("vit_s", "nemo"): 200, ("deit_s", "standard"): 50, ("deit_s", "nemo"): 200}


def test_reference_hparams_depend_on_model_and_data_set():
    assert _resolve("reference", "mwt", "simcnn", "svhn")[1].beta == 1.9
    assert _resolve("reference", "mwt", "simcnn", "cifar10")[1].beta == 1.5
    assert _resolve("reference", "nemo", "vgg16", "cifar10")[1].alpha == _resolve("smoke", "nemo", "vgg16",
                                                                                  "cifar10")[1].alpha
    _, vit = _resolve("reference", "mwt", "vit_s", "cifar10", {"depth": 2, "width": 0.25})
    assert (vit.extraction, vit.empty_layer, vit.beta) == ("paper", "whole", 0.85)


def test_reference_runs_moda_as_its_readme_and_modularizer_do():
    for model in ("vgg16", "resnet18", "mobilenetv2"):
        recipe, hparams = _resolve("reference", "moda", model, "cifar10")
        training = (recipe.optimizer, recipe.lr, recipe.nesterov, recipe.weight_decay, recipe.batch_size, recipe.epochs)
        assert training == ("sgd", 0.05, True, 0.0, 128, 200)
        assert (recipe.finetune_epochs, recipe.activity_split, recipe.activity_augment) == (0, "train_full", False)
        assert (hparams.alpha, hparams.beta, hparams.gamma, hparams.floor) == (1.0, 1.0, 0.3, 0.005)
    smoke, _ = _resolve("smoke", "moda", "vgg16", "cifar10")
    assert smoke.finetune_epochs > 0  # modbench fine-tunes every method's modules


def test_modbench_presets_set_no_method_values():
    for preset in ("smoke", "paper"):
        for model in MODELS:
            spec = get_plugins().models.get(model)
            assert method_overrides(preset, "nemo", spec, {}, "svhn") == {}


def test_vit_alias_resolves_to_vit_s_reference_values():
    plugins = get_plugins()
    assert plugins.models.get("vit").name == "vit_s"
    assert model_kind(plugins.models.get("deit_s"), {}) == "deit_s"


@pytest.mark.heavy
def test_reference_records_show_the_authors_optimizers_per_model(tiny_grid):
    from bench.pipeline.runner import run_grid

    grid = tiny_grid(methods="standard,mwt,nemo", models="simcnn:width=0.125,vit_s:depth=2,width=0.125",
                     preset="reference", sets=["epochs=1"])
    records = run_grid(grid)
    assert records and all(r["error"] is None for r in records)
    plugins = get_plugins()
    for record in records:
        spec = plugins.models.get(record["model"])
        kind = model_kind(spec, record["model_args"])
        recipe = record["recipe"]
        assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"]) == ("sgd", 0.05, 0.0)
        assert {k: recipe[k] for k in FINETUNING[kind] if k != "finetune_epochs"} == {
            k: v for k, v in FINETUNING[kind].items() if k != "finetune_epochs"}
        expected = method_overrides("reference", record["method"], spec, record["model_args"], record["dataset"])
        assert {k: record["hparams"][k] for k in expected} == expected
