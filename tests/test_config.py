"""Parsing of the command line's pieces: model references, tasks, --set values, config files."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.grid.config import parse_csv, parse_task, read_config_file
from bench.grid.settings import coerce_fields, parse_overrides
from bench.protocol.recipe import RECIPE_FIELDS, Recipe
from bench.refs import Ref, parse_refs, parse_value

# ----------------------------------------------------------------------------- references


def test_a_key_value_item_continues_the_previous_model():
    """The DESIGN's example: ``vit_s:depth=4,width=0.25,simcnn`` is two models."""
    assert parse_refs(["vit_s:depth=4,width=0.25,simcnn"]) == [
        Ref("vit_s", (("depth", 4), ("width", 0.25))),
        Ref("simcnn"),
    ]


def test_refs_from_several_options_and_blank_items():
    assert parse_refs(["vgg16:width=0.25", " resnet18 ,", "vit"]) == [
        Ref("vgg16", (("width", 0.25),)),
        Ref("resnet18"),
        Ref("vit"),
    ]


def test_ref_values_are_typed():
    (ref,) = parse_refs(["m:bn=false,depth=4,width=0.25,big=True,tag=abc,lr=1e-3"])
    assert ref.kwargs == {"bn": False, "depth": 4, "width": 0.25, "big": True, "tag": "abc", "lr": 0.001}
    assert type(ref.kwargs["depth"]) is int
    assert type(ref.kwargs["width"]) is float


def test_ref_arguments_are_sorted_so_the_order_typed_does_not_matter():
    assert parse_refs(["vit_s:width=0.25,depth=4"]) == parse_refs(["vit_s:depth=4,width=0.25"])


@pytest.mark.parametrize("text", ["width=0.25", "vgg16:", "vgg16:width"])
def test_unreadable_refs(text):
    with pytest.raises(UsageError, match="name:key=value"):
        parse_refs([text])


def test_slug_and_str():
    ref = Ref("vit_s", (("depth", 4), ("width", 0.25)))
    assert ref.slug == "vit_s-depth4-width0.25"
    assert str(ref) == "vit_s:depth=4,width=0.25"
    assert Ref("simcnn", (("bn", False),)).slug == "simcnn-bnfalse"
    assert str(Ref("simcnn", (("bn", False),))) == "simcnn:bn=false"
    assert Ref("digits").slug == str(Ref("digits")) == "digits"
    assert parse_refs([str(ref)]) == [ref]  # str() reads back


def test_slug_is_file_name_safe():
    (ref,) = parse_refs(["mydata:subset=../../etc"])
    assert "/" not in ref.slug


@pytest.mark.parametrize("raw, value", [
    ("4", 4), ("-2", -2), ("0.25", 0.25), ("1e-3", 0.001), ("true", True), ("False", False), (" TRUE ", True),
    ("abc", "abc"), (" padded ", "padded"), ("none", "none"),
])
def test_parse_value(raw, value):
    parsed = parse_value(raw)
    assert parsed == value and type(parsed) is type(value)


# ----------------------------------------------------------------------------- tasks and lists


def test_parse_task():
    assert parse_task("0,1") == (0, 1)
    assert parse_task(" 2, 3 ,4 ") == (2, 3, 4)
    assert parse_task("7", one_class=True) == (7,)


def test_a_one_class_task_is_refused_unless_asked_for():
    with pytest.raises(UsageError, match=r"has one class, so any module scores 100%.*--one-class-tasks"):
        parse_task("7")


@pytest.mark.parametrize("text, message", [
    ("0,x", "bad task '0,x'"), ("", "at least two class"), (",", "at least two class"), ("1,1", "names a class twice"),
    ("0.5", "bad task"), ("0,-1", "cannot be negative"),
])
def test_bad_tasks(text, message):
    with pytest.raises(UsageError, match=message) as err:
        parse_task(text)
    assert "\n" not in str(err.value)


def test_parse_csv():
    assert parse_csv("0,1, 2", int, "seeds") == (0, 1, 2)
    assert parse_csv("0.5,0.9", float, "thresholds") == (0.5, 0.9)
    with pytest.raises(UsageError, match="bad seeds 'a': expected int values"):
        parse_csv("a", int, "seeds")
    with pytest.raises(UsageError, match="--seeds is empty"):
        parse_csv(" , ", int, "seeds")


# ----------------------------------------------------------------------------- --set


def test_overrides_split_recipe_and_method_keys():
    overrides = parse_overrides(["epochs=30", "mwt.alpha=0.5", "nemo.tau=0.1", "mwt.beta=1", "lr=1e-3"])
    assert overrides.recipe == (("epochs", 30), ("lr", 0.001))
    assert overrides.for_method("mwt") == {"alpha": 0.5, "beta": 1}
    assert overrides.for_method("nemo") == {"tau": 0.1}
    assert overrides.for_method("standard") == {}


def test_a_later_set_wins():
    assert parse_overrides(["epochs=3", "epochs=5"]).recipe == (("epochs", 5),)


def test_overrides_are_order_independent_and_hashable():
    a = parse_overrides(["mwt.beta=1", "epochs=2", "mwt.alpha=0.5"])
    b = parse_overrides(["mwt.alpha=0.5", "epochs=2", "mwt.beta=1"])
    assert a == b and hash(a) == hash(b)


def test_unknown_setting_suggests_a_recipe_field():
    with pytest.raises(UsageError) as err:
        parse_overrides(["epoch=3"])
    message = str(err.value)
    assert "unknown setting 'epoch'" in message and "did you mean 'epochs'?" in message
    assert "method values as method.key" in message


def test_set_without_equals():
    with pytest.raises(UsageError, match="bad --set 'epochs': write key=value"):
        parse_overrides(["epochs"])


def test_every_recipe_field_is_a_setting():
    assert set(RECIPE_FIELDS) == {f.name for f in dataclasses.fields(Recipe)}
    values = {name: getattr(Recipe(epochs=1), name) for name in RECIPE_FIELDS}
    assert coerce_fields(Recipe, values, "recipe") == values


# ----------------------------------------------------------------------------- coerce_fields


@dataclass
class Hp:
    """A method's hyperparameters as a plugin would write them (annotations are strings here)."""

    alpha: float = 0.5
    steps: int = 3
    exact: bool = True
    mode: str = "a"
    mask_lr: float | None = None


def test_coerce_converts_to_the_field_types():
    values = coerce_fields(Hp, {"alpha": 1, "steps": 4, "exact": False, "mode": 7, "mask_lr": 0.1}, "method x")
    assert values == {"alpha": 1.0, "steps": 4, "exact": False, "mode": "7", "mask_lr": 0.1}
    assert type(values["alpha"]) is float


def test_coerce_none_for_optional_fields():
    assert coerce_fields(Hp, {"mask_lr": "none"}, "method x") == {"mask_lr": None}
    with pytest.raises(UsageError, match="bad value for alpha"):
        coerce_fields(Hp, {"alpha": "none"}, "method x")


@pytest.mark.parametrize("key, value, message", [
    ("alpha", "big", "bad value for alpha: 'big' is not a float"),
    ("alpha", True, "is not a float"),
    ("steps", 2.5, "bad value for steps: '2.5' is not an int"),
    ("steps", False, "is not an int"),
    ("exact", 1, "bad value for exact: '1' is not a bool"),
    ("exact", "yes", "is not a bool"),
    ("mask_lr", "fast", "bad value for mask_lr"),
])
def test_coerce_rejects_bad_values(key, value, message):
    with pytest.raises(UsageError, match=message):
        coerce_fields(Hp, {key: value}, "method x")


def test_coerce_rejects_unknown_keys_with_a_suggestion():
    with pytest.raises(UsageError) as err:
        coerce_fields(Hp, {"alpah": 1.0}, "method mwt")
    message = str(err.value)
    assert "method mwt has no setting 'alpah'" in message
    assert "did you mean 'alpha'?" in message
    assert "it has: alpha, steps, exact, mode, mask_lr" in message


def test_coerce_with_real_type_annotations():
    """Dataclasses built without ``from __future__ import annotations`` carry type objects."""
    real = dataclasses.make_dataclass("Real", [("n", int, 1), ("x", float, 0.0), ("lr", float | None, None)])
    assert coerce_fields(real, {"n": 2, "x": 1, "lr": "none"}, "m") == {"n": 2, "x": 1.0, "lr": None}
    with pytest.raises(UsageError, match="is not an int"):
        coerce_fields(real, {"n": "two"}, "m")


def test_recipe_values_from_set_strings():
    values = coerce_fields(Recipe, dict(parse_overrides(["epochs=2", "lr=1", "nesterov=false"]).recipe), "recipe")
    assert values == {"epochs": 2, "lr": 1.0, "nesterov": False}


def test_nan_is_not_a_learning_rate():
    from bench.grid.presets import with_overrides

    with pytest.raises(UsageError, match="bad value for lr"):
        coerce_fields(Recipe, dict(parse_overrides(["lr=nan"]).recipe), "recipe")
    with pytest.raises(UsageError, match="finite"):
        with_overrides(Recipe(epochs=1), {"lr": math.nan})


# ----------------------------------------------------------------------------- config files


def test_read_config_file(tmp_path: Path):
    path = tmp_path / "grid.toml"
    path.write_text('methods = ["mwt", "nemo"]\nmodels = "vgg16:width=0.25,vit"\nseeds = [0, 1]\n'
                    'quiet = true\n[set]\nepochs = 3\n"mwt.alpha" = 0.5\n')
    assert read_config_file(path) == {
        "methods": ["mwt", "nemo"], "models": "vgg16:width=0.25,vit", "seeds": [0, 1], "quiet": True,
        "set": {"epochs": 3, "mwt.alpha": 0.5},
    }


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(UsageError, match=r"config file not found: .*nope\.toml"):
        read_config_file(tmp_path / "nope.toml")


def test_bad_toml(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("methods = [mwt\n")
    with pytest.raises(UsageError, match="is not valid TOML") as err:
        read_config_file(path)
    assert str(path) in str(err.value)


def test_config_file_that_is_a_directory(tmp_path: Path):
    with pytest.raises(UsageError):
        read_config_file(tmp_path)
