"""The reuse scenarios a run may add (``--scenario patch:fraction=0.1``), parsed and checked early.

Patching a weak model (``patch``) is opt-in; composing modules across models needs no option: it
runs for every configuration of a grid with two or more trained models (seeds, or models of one
family).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.errors import UsageError
from bench.grid.settings import coerce_fields, suggest
from bench.refs import Ref

SCENARIOS = ("patch",)


@dataclass(frozen=True)
class PatchSettings:
    """The patching scenario: a weak model, patched class by class with the strong model's modules.

    fraction: share of every class's training images the weak model trains on (0.1).
    epochs: its training epochs (20: a tenth of the images twenty times is two epochs' worth of the
    training split), with the cell's standard recipe otherwise.
    without: a class the weak model never sees (none), so it cannot recognise it.
    calibration_epochs / calibration_lr: MODA's calibration layer over the joint outputs, trained on
    the weak model's images (classes withheld from it included) with SGD Nesterov and a cosine
    schedule (lr 0.05, MODA's value in ``exp_repair/weak_model_repair.py``; 100 epochs: MODA's README
    runs 10 epochs of a tenth of CIFAR-10, about 240 steps, and a tenth of ``digits`` is 3 batches).
    """

    fraction: float = 0.1
    epochs: int = 20
    without: int | None = None
    calibration_epochs: int = 100
    calibration_lr: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise UsageError(f"--scenario patch: fraction must lie between 0 and 1, got {self.fraction}")
        for name in ("epochs", "calibration_epochs"):
            if getattr(self, name) < 1:
                raise UsageError(f"--scenario patch: {name} must be at least 1, got {getattr(self, name)}")
        if not self.calibration_lr > 0:
            raise UsageError(f"--scenario patch: calibration_lr must be positive, got {self.calibration_lr}")
        if self.without is not None and self.without < 0:
            raise UsageError(f"--scenario patch: without is a class id, got {self.without}")

    def values(self) -> dict[str, float | int | None]:
        """The settings as plain values (stage keys, the record)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Scenarios:
    """The opt-in scenarios of a run: ``patch`` is None unless ``--scenario patch`` asked for it."""

    patch: PatchSettings | None = None


def parse_scenarios(refs: tuple[Ref, ...]) -> Scenarios:
    """``--scenario`` values as ``Scenarios``; one-line errors for an unknown name or setting."""
    patch = None
    for ref in refs:
        if ref.name not in SCENARIOS:
            raise UsageError(f"unknown scenario '{ref.name}'{suggest(ref.name, SCENARIOS)} "
                             f"(scenarios: {', '.join(SCENARIOS)})")
        values = coerce_fields(PatchSettings, ref.kwargs, "scenario patch")
        patch = PatchSettings(**values)
    return Scenarios(patch)
