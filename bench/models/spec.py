"""What a registered model is: a name, a family and a builder."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bench.errors import UsageError


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo (or of a plugin).

    ``build(num_classes, **args)`` returns the standard (unmasked) model; ``family`` is 'cnn' or
    'vit' and picks the training recipe and the masking policy; ``recipe`` may refine the recipe
    from the arguments (the published no-BN CNNs train differently); ``teacher`` names a model whose
    standard training this one distils from (DeiT).
    """

    name: str
    family: str
    build: Callable[..., nn.Module]
    description: str
    aliases: tuple[str, ...] = ()
    teacher: str | None = None
    recipe: Callable[[dict[str, Any]], str] | None = field(default=None, compare=False)

    def arguments(self) -> list[str]:
        """Keyword arguments the builder accepts (besides ``num_classes``)."""
        params = inspect.signature(self.build).parameters
        return [p for p in params if p != "num_classes"]

    def check_args(self, args: dict[str, Any]) -> None:
        """UsageError naming the model when ``args`` holds a keyword the builder does not take."""
        accepted = self.arguments()
        for key in args:
            if key not in accepted:
                raise UsageError(
                    f"model '{self.name}' takes no argument '{key}' (it takes: {', '.join(accepted) or 'none'})"
                )

    def recipe_name(self, args: dict[str, Any]) -> str:
        """The training-recipe family for these arguments: 'cnn', 'cnn_nobn' or 'vit'."""
        return self.recipe(args) if self.recipe is not None else self.family
