"""Composed task models whose logits cover every class of the data set, the task's columns filled.

``ClassModules`` is one physically extracted module per target class (CNNSplitter, GradSplitter):
each votes for its class, and the composition predicts the argmax of the votes, as published.
``TaskModule`` is one model re-engineered for the whole task (SeaM): the model's logits through a
task head (for a one-class task, a two-output head read through ``TargetMinusRest``). Every column
outside the task is 0, so a runner scoring the target columns, or putting a ReLU + Linear task head
on top, works unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def widen(votes: torch.Tensor, columns: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(batch, k) ``votes`` placed in the ``columns`` of a (batch, num_classes) tensor of zeros."""
    return votes.new_zeros(votes.shape[0], num_classes).index_copy(1, columns, votes)


class ClassModules(nn.Module):
    """``modules[i]`` votes for class ``classes[i]`` with its output column ``vote_columns[i]`` (by default its
    logit of that class; a module with a one-output head votes with column 0); other columns are 0."""

    def __init__(self, modules: Sequence[nn.Module], classes: Sequence[int], num_classes: int,
                 vote_columns: Sequence[int] | None = None) -> None:
        super().__init__()
        if len(modules) != len(classes):
            raise ValueError(f"{len(modules)} modules for {len(classes)} classes")
        self.class_modules = nn.ModuleList(modules)
        self.class_ids = [int(c) for c in classes]
        self.vote_columns = list(self.class_ids if vote_columns is None else vote_columns)
        self.register_buffer("columns", torch.tensor(self.class_ids, dtype=torch.long))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        votes = torch.stack([m(x)[:, c] for m, c in zip(self.class_modules, self.vote_columns, strict=True)],
                            dim=1)  # (batch, target classes)
        return widen(votes, self.columns, self.num_classes)


class TaskModule(nn.Module):
    """``head(model(x))``: logits over the task's ``classes``, placed in their columns of all ``num_classes``."""

    def __init__(self, model: nn.Module, head: nn.Module, classes: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.model, self.head = model, head
        self.register_buffer("columns", torch.tensor([int(c) for c in classes], dtype=torch.long))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return widen(self.head(self.model(x)), self.columns, self.num_classes)


class TargetMinusRest(nn.Module):
    """A one-vs-rest head's one column: its target logit minus its rest logit, (batch, 2) -> (batch, 1)."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, :1] - logits[:, 1:2]
