"""Training recipes: how each model family is trained, per preset.

``paper`` follows the authors' settings (MwT/NeMo CNNs: SGD Nesterov lr 0.05, cosine, 200 epochs,
batch 128, no weight decay; CNNSplitter's no-BN CNNs: SGD lr 0.01, weight decay 1e-4, x0.1 at 30%
and 60% of training); ViTs use their usual recipe (AdamW, warm-up, weight decay), since SGD at
lr 0.05 leaves a ViT at chance (DESIGN, "Training recipes"). ``smoke`` takes minutes on a laptop
CPU and still learns ``digits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from bench.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    """How a model is trained, how its reused modules are fine-tuned, and how it is measured."""

    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 0.05
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "cosine"  # "cosine" | "step" | "onecycle"
    warmup_epochs: int = 0
    finetune_epochs: int = 10
    finetune_lr: float = 0.05
    val_fraction: float = 0.1
    eval_batch_size: int = 256
    activity_samples: int = 256
    latency_batch: int = 32
    amp: bool = True

    def check(self) -> None:
        """UsageError for values no training loop can use."""
        if self.optimizer not in ("sgd", "adamw"):
            raise UsageError(f"bad value for optimizer: '{self.optimizer}' (choose sgd or adamw)")
        if self.schedule not in ("cosine", "step", "onecycle"):
            raise UsageError(f"bad value for schedule: '{self.schedule}' (choose cosine, step or onecycle)")
        positive = ("epochs", "batch_size", "eval_batch_size", "activity_samples", "latency_batch")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"bad value for {name}: {getattr(self, name)} (must be at least 1)")
        for name in ("lr", "finetune_lr", "weight_decay", "momentum"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (value == 0 and name.endswith("lr")):
                raise UsageError(f"bad value for {name}: {value} (must be a finite, positive number)")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"bad value for val_fraction: {self.val_fraction} (must be between 0 and 1)")
        if self.finetune_epochs < 0 or self.warmup_epochs < 0:
            raise UsageError("bad value: finetune_epochs and warmup_epochs cannot be negative")


RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))

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


def recipe_for(preset: str, recipe_name: str) -> Recipe:
    """The preset's recipe for a model's recipe family ('cnn', 'cnn_nobn', 'vit')."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}' (choose {', '.join(PRESETS)})")
    family_recipes = PRESETS[preset]
    return family_recipes.get(recipe_name, family_recipes["cnn"])


def with_overrides(recipe: Recipe, values: dict[str, object]) -> Recipe:
    """``recipe`` with ``--set`` values applied (already converted to the fields' types)."""
    updated = replace(recipe, **values)
    updated.check()
    return updated
