"""Per-unit signals of a forward pass, collected by forward hooks: one place for every reader.

A unit's *signal* for a sample is one number per output unit (``ConvUnit.signal``: a channel's mean
post-ReLU activation over its feature map; ``LinearUnit.signal``: a neuron's positive part, averaged
over tokens first); its *activity* says which units were active (``unit.activity``: mask > 0 for a
unit with a generator, else signal > 0). The activity pass (``bench.modular.activity``) reads
activity; MODA's loss reads the signals of the ``activation_units`` themselves, with their gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.models.layers import ConvUnit, LinearUnit
from bench.modular.masking import maskable_units
from bench.modular.similarity import MaskList

READINGS = ("signal", "activity")


def activation_units(model: nn.Module) -> list[tuple[str, ConvUnit | LinearUnit]]:
    """The maskable units followed by an activation function: every maskable conv of a CNN, the MLP's
    hidden neurons (``mlp.fc1``) of a ViT's masked blocks (the rest feeds the residual stream as it is)."""
    named = maskable_units(model)
    return named if model.family == "cnn" else [(n, u) for n, u in named if n.endswith("mlp.fc1")]


class UnitRecorder:
    """Forward hooks on ``units`` that keep what each one gave in the last forward pass.

    ``read`` is 'signal' (float (batch, units), differentiable) or 'activity' (bool (batch, units)),
    computed in the hook, so no feature map outlives its layer. Use as a context manager (or call
    ``remove``): the hooks stay on the model until then.
    """

    def __init__(self, units: Sequence[tuple[str, ConvUnit | LinearUnit]], read: str = "signal") -> None:
        if read not in READINGS:
            raise ValueError(f"read must be one of {', '.join(READINGS)}, not {read!r}")
        self.read = read
        self._values: list[torch.Tensor | None] = [None] * len(units)
        self._hooks = [u.register_forward_hook(self._keep(i)) for i, (_, u) in enumerate(units)]

    def _keep(self, i: int):
        def hook(unit: ConvUnit | LinearUnit, _inputs: tuple, output: torch.Tensor) -> None:
            self._values[i] = getattr(unit, self.read)(output)  # (batch, units)
        return hook

    def last(self) -> MaskList:
        """What each unit gave in the last forward pass, one (batch, units) tensor per unit, in order."""
        if any(v is None for v in self._values):
            raise RuntimeError("a recorded unit did not run in the last forward pass")
        return MaskList(self._values)

    def remove(self) -> None:
        """Take the hooks off the model."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def __enter__(self) -> UnitRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
