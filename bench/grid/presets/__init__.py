"""Presets: per grid cell, a training recipe and the method hyperparameters the preset sets.

``smoke`` and ``paper`` are modbench's own (``modbench.py``); ``reference`` reproduces the MwT and
NeMo authors' scripts (``reference.py``). The runner resolves ``recipe_for`` and
``method_overrides`` for every cell, then applies the user's ``--set`` values on top.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.errors import UsageError
from bench.grid.presets.base import Preset
from bench.grid.presets.modbench import PAPER, SMOKE
from bench.grid.presets.reference import REFERENCE
from bench.models.spec import ModelSpec
from bench.protocol.recipe import Recipe

PRESETS: dict[str, Preset] = {"smoke": SMOKE, "paper": PAPER, "reference": REFERENCE}
PRESET_NAMES = tuple(PRESETS)


def check_preset(preset: str) -> None:
    """UsageError unless ``preset`` names a preset."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}' (choose {', '.join(PRESETS)})")


def recipe_for(preset: str, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> Recipe:
    """The preset's recipe for one cell: a method training a model (with its arguments) on a data set."""
    check_preset(preset)
    return PRESETS[preset].recipe(method, model, model_args, dataset)


def method_overrides(preset: str, method: str, model: ModelSpec, model_args: dict[str, Any],
                     dataset: str) -> dict[str, Any]:
    """Hyperparameter values the preset sets for one cell's method (``--set method.key=...`` wins over them)."""
    check_preset(preset)
    return PRESETS[preset].overrides(method, model, model_args, dataset)


def with_overrides(recipe: Recipe, values: dict[str, object]) -> Recipe:
    """``recipe`` with ``--set`` values applied (already converted to the fields' types)."""
    updated = replace(recipe, **values)
    updated.check()
    return updated
