"""What a registered model is: a name, a family and a builder."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bench.errors import UsageError, a_type

MAX_WIDTH = 16.0  # a width multiplier beyond this is a typo, not a model (VGG16 would have 8192 channels)
MAX_DEPTH = 64


def check_width(width: float) -> float:
    """``width`` when it is a finite number in (0, MAX_WIDTH]; ValueError saying so otherwise."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (
            math.isfinite(width) and 0 < width <= MAX_WIDTH):
        raise ValueError(f"width must be a number in (0, {MAX_WIDTH:g}], got {width!r}")
    return width


def check_depth(depth: int, minimum: int = 1, why: str = "") -> int:
    """``depth`` when it is an integer from ``minimum`` to MAX_DEPTH; ValueError saying so (and ``why``) otherwise."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not minimum <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be an integer from {minimum} to {MAX_DEPTH}{why}, got {depth!r}")
    return depth


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo (or of a plugin).

    ``build(num_classes, **args)`` returns the standard (unmasked) model; ``family`` is 'cnn' or
    'vit' and picks the training recipe and the masking policy; ``recipe`` may refine the recipe
    from the arguments (the published no-BN CNNs train differently); ``teacher`` names a model whose
    standard training this one distils from (DeiT); the teacher gets the student's ``width``, so
    a scaled-down student learns from an equally scaled-down teacher.
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

    def canonical_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` checked, with values of the defaults' types and defaults left out.

        ``vgg16:width=1`` and ``vgg16`` name the same model, so they share one cache key.
        """
        self.check_args(args)
        defaults = {name: p.default for name, p in inspect.signature(self.build).parameters.items()}
        canonical = {}
        for key, value in args.items():
            default = defaults[key]
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif type(value) is not type(default) and default is not inspect.Parameter.empty:
                raise UsageError(f"model '{self.name}': {key}={value!r} should be {a_type(type(default).__name__)}")
            if value != default:
                canonical[key] = value
        return canonical

    def teacher_ref(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(teacher model name, its arguments) for a student built with ``args``; None without teacher."""
        if self.teacher is None:
            return None
        return self.teacher, {"width": args["width"]} if "width" in args else {}

    def recipe_name(self, args: dict[str, Any]) -> str:
        """The training-recipe family for these arguments: 'cnn', 'cnn_nobn' or 'vit'."""
        return self.recipe(args) if self.recipe is not None else self.family
