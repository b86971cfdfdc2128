"""One resolver of names and settings, used by the grid expansion and by every cell.

It turns what the user typed (a method name, a model and a data set with arguments, ``--set``
values) into a ``Resolved`` cell: registered objects, canonical names (aliases resolved, default
arguments left out, so ``vgg16:width=1`` and ``vgg16`` share one cache), the preset's recipe and
the method's hyperparameters, every value checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import UsageError
from bench.grid.presets import method_overrides, recipe_for, with_overrides
from bench.grid.settings import Overrides, coerce_fields
from bench.models.spec import ModelSpec
from bench.plugins.manager import Plugins
from bench.protocol.method import Method
from bench.protocol.recipe import Recipe
from bench.refs import Ref

STANDARD = "standard"


@dataclass(frozen=True)
class Resolved:
    """A cell with its names resolved: method, model spec, canonical refs, recipe and hyperparameters."""

    method: Method
    spec: ModelSpec
    model: Ref
    dataset: Ref
    seed: int
    preset: str
    overrides: Overrides
    recipe: Recipe
    hparams: Any

    @property
    def hparam_values(self) -> dict[str, Any]:
        """The hyperparameters as a plain dict (empty for a method without any)."""
        return dataclasses.asdict(self.hparams) if dataclasses.is_dataclass(self.hparams) else {}


class Resolver:
    """Resolves names against the plugins' registries and builds each cell's recipe and hyperparameters."""

    def __init__(self, plugins: Plugins, preset: str) -> None:
        self.plugins = plugins
        self.preset = preset

    def model(self, ref: Ref) -> Ref:
        """The canonical name of a model, checked by building it without memory (meta device)."""
        canonical = self.plugins.model_ref(ref.name, ref.kwargs)
        spec = self.plugins.models.get(canonical.name)
        try:
            with torch.device("meta"):
                spec.build(10, **canonical.kwargs)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"model '{ref}': {exc}") from None
        return canonical

    def dataset(self, ref: Ref) -> Ref:
        """The canonical name of a data set: alias resolved, options checked, defaults left out."""
        spec = self.plugins.datasets.get(ref.name)
        canonical = getattr(spec, "canonical_args", None)
        args = canonical(ref.kwargs) if canonical is not None else ref.kwargs
        return Ref(spec.name, tuple(sorted(args.items())))

    def cell(self, method_name: str, model: Ref, dataset: Ref, seed: int, overrides: Overrides) -> Resolved:
        """A cell of canonical ``model`` and ``dataset`` with its recipe and hyperparameters."""
        method = self.plugins.methods.get(method_name)
        spec = self.plugins.models.get(model.name)
        if spec.family not in method.families:
            raise UsageError(f"method '{method.name}' does not support {spec.family} models like '{model.name}'")
        overrides = overrides.only(method.name)
        recipe_values = coerce_fields(Recipe, dict(overrides.recipe), "recipe")
        recipe = with_overrides(recipe_for(self.preset, method.name, spec, model.kwargs, dataset.name), recipe_values)
        hparams = method.hparams(spec)
        if dataclasses.is_dataclass(hparams):
            preset_values = method_overrides(self.preset, method.name, spec, model.kwargs, dataset.name)
            values = {**preset_values, **overrides.for_method(method.name)}
            try:
                hparams = dataclasses.replace(hparams, **coerce_fields(type(hparams), values, f"method {method.name}"))
            except (ValueError, TypeError) as exc:  # the dataclass's own checks
                raise UsageError(f"method {method.name}: {exc}") from None
        elif overrides.for_method(method.name):
            raise UsageError(f"method {method.name} has no settings")
        return Resolved(method, spec, model, dataset, seed, self.preset, overrides, recipe, hparams)

    def standard_of(self, r: Resolved) -> Resolved:
        """The standard model ``r`` is measured against (same model, data set, seed and recipe values)."""
        return self.cell(STANDARD, r.model, r.dataset, r.seed, r.overrides)

    def teacher_of(self, r: Resolved) -> Resolved | None:
        """The standard-trained teacher a distilled model learns from (None without one)."""
        teacher = self.plugins.teacher_ref(r.model)
        return None if teacher is None else self.cell(STANDARD, teacher, r.dataset, r.seed, r.overrides)

    def start_of(self, r: Resolved) -> Resolved | None:
        """The trained model a post-training method starts from (None for methods that train their own)."""
        start = r.method.starts_from
        return None if start is None else self.cell(start, r.model, r.dataset, r.seed, r.overrides)
