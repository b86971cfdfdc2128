"""The name registries: aliases, wildcards, duplicates reported by plugin, "did you mean"."""

from __future__ import annotations

import pytest

from bench.errors import PluginError, UsageError
from bench.plugins.manager import get_plugins
from bench.plugins.registry import Registry


@pytest.fixture
def models() -> Registry:
    registry = Registry("model", "bench list models")
    registry.add("vgg16", "VGG", "zoo")
    registry.add("vit_s", "ViT-s", "zoo", aliases=("vit",))
    registry.add("vit_b", "ViT-b", "other")
    registry.add("deit_s", "DeiT", "zoo", aliases=("deit",))
    return registry


def test_names_and_aliases_resolve(models):
    assert models.canonical("vit_s") == "vit_s"
    assert models.canonical("vit") == "vit_s"
    assert models.get("vit") == "ViT-s"
    assert models.aliases_of("vit_s") == ["vit"]
    assert models.aliases_of("vgg16") == []
    assert "vit" in models and "vit_s" in models and "resnet" not in models
    assert list(models) == ["vgg16", "vit_s", "vit_b", "deit_s"]  # aliases are not items
    assert len(models) == 4


def test_wildcards_match_names_in_registration_order(models):
    assert models.match("vit*") == ["vit_s", "vit_b"]
    assert models.match("*_s") == ["vit_s", "deit_s"]
    assert models.match() == ["vgg16", "vit_s", "vit_b", "deit_s"]
    assert models.match("resnet*") == []


@pytest.mark.parametrize("typo, suggestion", [("vgg61", "vgg16"), ("vit_ss", "vit_s"), ("deet", "deit")])
def test_unknown_name_suggests_the_closest(models, typo, suggestion):
    with pytest.raises(UsageError) as err:
        models.get(typo)
    message = str(err.value)
    assert f"unknown model '{typo}'" in message
    assert f"did you mean '{suggestion}'?" in message
    assert "(bench list models)" in message
    assert "\n" not in message


def test_unknown_name_without_a_close_match_has_no_suggestion(models):
    with pytest.raises(UsageError, match="unknown model 'xyzzy'") as err:
        models.canonical("xyzzy")
    assert "did you mean" not in str(err.value)


@pytest.mark.parametrize("name, aliases", [("vgg16", ()), ("vit", ()), ("new", ("vit_s",)), ("new", ("deit",))])
def test_a_name_taken_twice_names_both_plugins(models, name, aliases):
    first = "zoo"
    with pytest.raises(PluginError) as err:
        models.add(name, "again", "my-plugin", aliases=aliases)
    message = str(err.value)
    assert f"plugin '{first}'" in message and "plugin 'my-plugin'" in message
    assert "registered twice" in message
    assert "\n" not in message


def test_a_rejected_registration_changes_nothing(models):
    with pytest.raises(PluginError):
        models.add("fresh", "x", "p", aliases=("vit",))  # the alias clashes, so 'fresh' is not added either
    assert "fresh" not in models
    assert models.owner.get("fresh") is None


def test_owner_remembers_the_plugin(models):
    assert models.owner["vit_b"] == "other"
    assert models.owner["vit_s"] == "zoo"


def test_builtin_registries():
    plugins = get_plugins()
    assert {"standard", "mwt", "nemo"} <= set(plugins.methods)
    assert plugins.models.match("vit*") == ["vit_s"]
    assert plugins.models.canonical("vit") == "vit_s"
    assert plugins.models.canonical("deit") == "deit_s"
    assert plugins.datasets.canonical("cifar20") == "cifar100_coarse"
    assert plugins.methods.owner["mwt"] == "methods.mwt"
    assert plugins.models.owner["vgg16"] == "bench.models.builtin"
    with pytest.raises(UsageError, match="did you mean 'nemo'"):
        plugins.methods.get("nemmo")
    with pytest.raises(UsageError, match=r"did you mean 'digits'\? \(bench list datasets\)"):
        plugins.datasets.get("digit")
