"""A training recipe: how a model is trained, how its modules are fine-tuned, how it is measured."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from bench.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16")

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
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "fp32" | "bf16"
    deterministic: bool = False
    compile: bool = False

    def resolved_precision(self, device_type: str) -> str:
        """'fp32' or 'bf16': what ``precision`` means on a device of ``device_type`` ('cpu', 'cuda', ...)."""
        if self.precision == "auto":
            return "bf16" if device_type == "cuda" else "fp32"
        return self.precision

    def check(self) -> None:
        """UsageError for values no training loop can use."""
        if self.optimizer not in ("sgd", "adamw"):
            raise UsageError(f"bad value for optimizer: '{self.optimizer}' (choose sgd or adamw)")
        if self.precision not in PRECISIONS:
            raise UsageError(f"bad value for precision: '{self.precision}' (choose {', '.join(PRECISIONS)})")
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
