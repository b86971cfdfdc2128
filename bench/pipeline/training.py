"""The training loop every method shares: optimizer, schedule, AMP, history, model selection.

Methods supply a loss function ``loss_fn(model, x, y) -> (loss, logs)``; logs are scalar tensors
averaged over the epoch (no host sync per step).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import BatchLoader
from bench.modular.groups import modular_groups
from bench.pipeline.metrics import accuracy
from bench.protocol.recipe import Recipe

STEP_MILESTONES = (0.3, 0.6)  # CNNSplitter: x0.1 at epochs 60 and 120 of 200
DISTILL_TEMPERATURE = 1.0


@dataclass
class Schedule:
    """Optimizer settings of one ``fit``: epochs, base learning rate and schedule shape.

    ``horizon`` stretches a cosine schedule beyond the epochs run (the MwT/NeMo authors fine-tune
    modules with a cosine of twice the fine-tuning epochs); ``lr_setting`` names the recipe value
    that sets ``lr`` (what a divergence message advises to lower); ``loss_settings`` are the other
    settings that shape the loss (``nemo.tau=0.2``), which that message names too.
    """

    epochs: int
    lr: float
    kind: str = "cosine"
    warmup_epochs: int = 0
    horizon: float = 1.0
    lr_setting: str = "lr"
    loss_settings: tuple[str, ...] = ()

    def divergence_advice(self) -> str:
        """What to change when the loss diverges: the learning rate's setting, and the loss's own."""
        advice = f"try a smaller {self.lr_setting} with --set {self.lr_setting}=..."
        return advice + (f", or other values of {', '.join(self.loss_settings)}" if self.loss_settings else "")


def make_optimizer(recipe: Recipe, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over parameter ``groups`` (a group may set its own 'lr').

    Multi-tensor (``foreach``) on every device, as PyTorch chooses on CUDA: each update is one
    operation per group rather than one per parameter, with the same numbers as the per-parameter loop.
    """
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=recipe.weight_decay, foreach=True)
    return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=recipe.nesterov and recipe.momentum > 0,
                           weight_decay=recipe.weight_decay, foreach=True)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step scheduler: cosine (with linear warm-up), step decay, or one-cycle."""
    total = max(1, schedule.epochs * steps_per_epoch)
    if schedule.kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total)
    warm = schedule.warmup_epochs * steps_per_epoch
    horizon = max(1.0, total * schedule.horizon - warm)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if schedule.kind == "step":
            passed = sum(step >= m * total for m in STEP_MILESTONES)
            return 0.1**passed
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / horizon)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``precision`` is 'bf16' (on a CPU too), else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Plain cross-entropy on the model's logits."""
    loss = F.cross_entropy(model(x), y)
    return loss, {"ce": loss.detach()}


def distillation_loss(teacher: nn.Module) -> Callable:
    """DeiT's objective as the NeMo authors train it: 0.5·CE(cls) + 0.25·(KL(cls‖t) + KL(dist‖t)), τ = 1."""

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        cls, dist = model.forward_heads(x)
        with torch.no_grad():
            target = F.softmax(teacher(x).float() / DISTILL_TEMPERATURE, dim=1)
        ce = F.cross_entropy(cls, y)
        kl = sum(F.kl_div(F.log_softmax(h.float() / DISTILL_TEMPERATURE, dim=1), target, reduction="batchmean")
                 for h in (cls, dist)) * DISTILL_TEMPERATURE**2
        loss = 0.5 * ce + 0.25 * kl
        return loss, {"ce": ce.detach(), "kl": kl.detach()}

    return loss_fn


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class _Step:
    """One optimizer step of ``fit``, and an epoch of them with the mean of each logged value."""

    model: nn.Module
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    precision: str

    def epoch(self, batches: BatchLoader, on_batch: Callable[[], None] | None) -> dict[str, float]:
        """Train on every batch; the epoch's mean loss and logged terms (one host sync, at the end)."""
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        for x, y in batches:
            with autocast(self.device, self.precision):
                loss, logs = self.loss_fn(self.model, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            for key, value in {"loss": loss.detach(), **logs}.items():
                sums[key] = sums.get(key, 0) + value.float()
            steps += 1
            if on_batch is not None:
                on_batch()
        return {k: float(v) / max(steps, 1) for k, v in sums.items()}


def fit(
    model: nn.Module,
    train: BatchLoader,
    val: BatchLoader | None,
    recipe: Recipe,
    schedule: Schedule,
    loss_fn: Callable = cross_entropy_loss,
    groups: list[dict] | None = None,
    select_best: bool = False,
    on_batch: Callable[[], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; returns one metrics dict per epoch.

    With ``select_best`` the weights of the epoch with the best validation accuracy are restored
    at the end (model selection on the validation split, never the test set); an epoch whose loss
    diverges ends the fit as a row ``{"epoch", "diverged": why}`` that selection passes over (without
    ``select_best`` it raises ``Diverged``: there is nothing to select). The recipe's
    precision on the model's device decides whether the forward pass runs under bfloat16 autocast
    (on a CPU too, when it says bf16). With ``recipe.compile``
    the loss function (forward pass and loss) runs through ``torch.compile``.
    """
    device = next(model.parameters()).device
    groups = groups or modular_groups(model, schedule.lr)  # biases and norms without weight decay
    if recipe.compile:
        loss_fn = torch.compile(loss_fn, dynamic=False)  # forward and loss as one graph; backward by AOTAutograd
    optimizer = make_optimizer(recipe, groups, schedule.lr)
    scheduler = make_scheduler(optimizer, schedule, len(train))
    history: list[dict[str, float]] = []
    best: tuple[float, dict] | None = None
    step = _Step(model, loss_fn, optimizer, scheduler, device, recipe.resolved_precision(device.type))
    for epoch in range(schedule.epochs):
        start = time.perf_counter()
        train.set_epoch(epoch)
        row = {"epoch": epoch + 1, **step.epoch(train, on_batch)}
        if not math.isfinite(row.get("loss", 0.0)):
            message = f"the loss is {row['loss']} at epoch {epoch + 1} ({schedule.divergence_advice()})"
            if not select_best:
                raise Diverged(f"training diverged: {message}")
            history.append({"epoch": epoch + 1, "diverged": message})  # no candidate: selection passes it over
            break
        if val is not None:
            row["val_acc"] = accuracy(model, val)
            if select_best and (best is None or row["val_acc"] > best[0]):
                best = (row["val_acc"], copy.deepcopy(model.state_dict()))
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    if best is not None:
        model.load_state_dict(best[1])
    return history
