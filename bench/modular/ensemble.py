"""A composed task model made of one physically extracted module per target class (CNNSplitter).

Each class module is the model restricted to that class's kernels; it votes with its own-class
logit and the composition predicts the argmax of those votes, as published. The output is a
num_classes-wide logit vector with the target columns filled and every other column 0, so a
runner scoring the target columns, or putting a ReLU + Linear task head on top, works unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ClassModules(nn.Module):
    """``modules[i]`` votes for class ``classes[i]`` with its logit of that class; other columns are 0."""

    def __init__(self, modules: Sequence[nn.Module], classes: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if len(modules) != len(classes):
            raise ValueError(f"{len(modules)} modules for {len(classes)} classes")
        self.class_modules = nn.ModuleList(modules)
        self.class_ids = [int(c) for c in classes]
        self.register_buffer("columns", torch.tensor(self.class_ids, dtype=torch.long))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        votes = torch.stack([m(x)[:, c] for m, c in zip(self.class_modules, self.class_ids, strict=True)],
                            dim=1)  # (batch, target classes)
        out = votes.new_zeros(x.shape[0], self.num_classes)
        return out.index_copy(1, self.columns, votes)
