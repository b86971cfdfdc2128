"""A training recipe: how a model is trained, how its modules are fine-tuned, how it is measured."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from bench.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "onecycle")
AUGMENTS = ("dataset", "none", "crop", "crop_flip")
ACTIVITY_SPLITS = ("train", "train_full")


@dataclass(frozen=True)
class Recipe:
    """How a model is trained, how its reused modules are fine-tuned, and how it is measured.

    Fine-tuning a reused module uses its own optimizer, learning rate, weight decay and cosine
    horizon (in multiples of ``finetune_epochs``; the MwT/NeMo CNN and ViT-S scripts anneal over
    twice the epochs run, the DeiT-S script over exactly them). ``augment`` replaces the data set's
    own training augmentation ('dataset' keeps it). The activity pass that yields the module
    statistics runs over ``activity_split`` ('train': the training split, 'train_full': training
    plus validation split, all the training images) with or without the training augmentation.
    """

    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 0.05
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "cosine"  # "cosine" | "step" | "onecycle"
    warmup_epochs: int = 0
    augment: str = "dataset"  # "dataset" | "none" | "crop" | "crop_flip"
    finetune_epochs: int = 10
    finetune_optimizer: str = "sgd"  # "sgd" | "adamw"
    finetune_lr: float = 0.05
    finetune_weight_decay: float = 0.0
    finetune_horizon: float = 2.0
    val_fraction: float = 0.1
    eval_batch_size: int = 256
    activity_split: str = "train"  # "train" | "train_full"
    activity_augment: bool = False
    activity_samples: int = 256
    latency_batch: int | None = None  # the throughput batch of latency_ratio (None: 256 on a GPU, 128 on a CPU)
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "fp32" | "bf16"
    deterministic: bool = False
    compile: bool = False

    def resolved_precision(self, device_type: str) -> str:
        """'fp32' or 'bf16': what ``precision`` means on a device of ``device_type`` ('cpu', 'cuda', ...)."""
        if self.precision == "auto":
            return "bf16" if device_type == "cuda" else "fp32"
        return self.precision

    def throughput_batch(self, device_type: str) -> int:
        """The batch ``latency_ratio`` is measured at on a device of ``device_type``."""
        if self.latency_batch is not None:
            return self.latency_batch
        return 256 if device_type == "cuda" else 128

    def train_augment(self, dataset_augment: str) -> str:
        """The augmentation of training batches for a data set whose own is ``dataset_augment``."""
        return dataset_augment if self.augment == "dataset" else self.augment

    def finetuning(self) -> Recipe:
        """The recipe a reused module is fine-tuned with: the fine-tuning optimizer, lr and weight decay
        in the training fields (``make_optimizer`` and ``fit`` read those), no warm-up."""
        return replace(self, epochs=max(1, self.finetune_epochs), optimizer=self.finetune_optimizer,
                       lr=self.finetune_lr, weight_decay=self.finetune_weight_decay, schedule="cosine",
                       warmup_epochs=0)

    def check(self) -> None:
        """UsageError for values no training loop can use."""
        for name, choices in (("optimizer", OPTIMIZERS), ("finetune_optimizer", OPTIMIZERS),
                              ("precision", PRECISIONS), ("schedule", SCHEDULES), ("augment", AUGMENTS),
                              ("activity_split", ACTIVITY_SPLITS)):
            if getattr(self, name) not in choices:
                raise UsageError(f"bad value for {name}: '{getattr(self, name)}' (choose {', '.join(choices)})")
        positive = ("epochs", "batch_size", "eval_batch_size", "activity_samples", "latency_batch")
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"bad value for {name}: {getattr(self, name)} (must be at least 1)")
        for name in ("lr", "finetune_lr", "weight_decay", "finetune_weight_decay", "momentum"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (value == 0 and name.endswith("lr")):
                raise UsageError(f"bad value for {name}: {value} (must be a finite, positive number)")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"bad value for val_fraction: {self.val_fraction} (must be between 0 and 1)")
        if self.finetune_epochs < 0 or self.warmup_epochs < 0:
            raise UsageError("bad value: finetune_epochs and warmup_epochs cannot be negative")
        if not (math.isfinite(self.finetune_horizon) and self.finetune_horizon >= 1):
            raise UsageError(f"bad value for finetune_horizon: {self.finetune_horizon} (must be at least 1)")


RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))
