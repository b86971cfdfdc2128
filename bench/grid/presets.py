"""Training recipes: how each model family is trained, per preset.

``paper`` follows the authors' settings (MwT/NeMo CNNs: SGD Nesterov lr 0.05, cosine, 200 epochs,
batch 128, no weight decay; CNNSplitter's no-BN CNNs: SGD lr 0.01, weight decay 1e-4, x0.1 at 30%
and 60% of training); ViTs use their usual recipe (AdamW, warm-up, weight decay), since SGD at
lr 0.05 leaves a ViT at chance (DESIGN, "Training recipes"). ``smoke`` takes minutes on a laptop
CPU and still learns ``digits``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.errors import UsageError
from bench.models.spec import ModelSpec
from bench.protocol.recipe import Recipe

PRESETS: dict[str, dict[str, Recipe]] = {
    "paper": {
        "cnn": Recipe(epochs=200),
        "cnn_nobn": Recipe(epochs=200, lr=0.01, weight_decay=1e-4, nesterov=False, schedule="step",
                           finetune_lr=0.01),
        "vit": Recipe(epochs=200, optimizer="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=10,
                      finetune_lr=5e-4),
    },
    "smoke": {
        "cnn": Recipe(epochs=8, batch_size=64, activity_samples=128, latency_batch=16),
        "cnn_nobn": Recipe(epochs=12, batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=1e-4,
                           schedule="onecycle", finetune_lr=5e-4, activity_samples=128,
                           latency_batch=16),
        "vit": Recipe(epochs=15, batch_size=32, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                      schedule="onecycle", finetune_lr=5e-4, activity_samples=128,
                      latency_batch=16),
    },
}


def check_preset(preset: str) -> None:
    """UsageError unless ``preset`` names a preset."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}' (choose {', '.join(PRESETS)})")


def recipe_for(preset: str, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> Recipe:
    """The preset's recipe for one cell: a method training a model (with its arguments) on a data set."""
    check_preset(preset)
    family_recipes = PRESETS[preset]
    return family_recipes.get(model.recipe_name(model_args), family_recipes["cnn"])


def method_overrides(preset: str, method: str, model: ModelSpec, model_args: dict[str, Any],
                     dataset: str) -> dict[str, Any]:
    """Hyperparameter values the preset sets for one cell's method (``--set method.key=...`` wins over them)."""
    check_preset(preset)
    return {}


def with_overrides(recipe: Recipe, values: dict[str, object]) -> Recipe:
    """``recipe`` with ``--set`` values applied (already converted to the fields' types)."""
    updated = replace(recipe, **values)
    updated.check()
    return updated
