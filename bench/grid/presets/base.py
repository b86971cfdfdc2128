"""What a preset is: per cell, a training recipe and the method hyperparameters it sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.models.spec import ModelSpec
from bench.protocol.recipe import Recipe


class Preset(Protocol):
    """A named way of running every cell of a grid."""

    description: str

    def recipe(self, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> Recipe:
        """The recipe of one cell: ``method`` training ``model`` (with ``model_args``) on ``dataset``."""

    def overrides(self, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> dict[str, Any]:
        """Values of the method's hyperparameter fields that this preset sets for the cell."""


@dataclass(frozen=True)
class FamilyPreset:
    """One recipe per training-recipe family ('cnn', 'cnn_nobn', 'vit'), and per method the
    hyperparameter values it sets (the methods' documented defaults otherwise).

    A model whose family has no recipe here trains with the 'cnn' recipe.
    """

    description: str
    recipes: dict[str, Recipe]
    method_values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def recipe(self, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> Recipe:
        """The recipe of the model's family."""
        return self.recipes.get(model.recipe_name(model_args), self.recipes["cnn"])

    def overrides(self, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> dict[str, Any]:
        """The values this preset sets for ``method`` (none: the method's documented defaults hold)."""
        return dict(self.method_values.get(method, {}))
