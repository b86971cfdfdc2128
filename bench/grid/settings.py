"""``--set`` values: recipe fields and method hyperparameters, sweeps among them, checked against dataclasses.

A value with commas (``--set nemo.alpha=0.5,1.5``, or a TOML array) is a sweep axis: the grid runs
the product of all axes, one cell per combination (``Overrides.variants``).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError, a_type
from bench.protocol.recipe import RECIPE_FIELDS
from bench.refs import Args, _format, parse_value


@dataclass(frozen=True)
class Overrides:
    """``--set`` values: recipe fields (``epochs=30``) and method hyperparameters (``mwt.alpha=0.5``).

    A value that is a tuple is a sweep axis (several values); ``variants()`` expands them.
    """

    recipe: Args = ()
    methods: tuple[tuple[str, Args], ...] = ()

    def for_method(self, name: str) -> dict[str, Any]:
        """Raw hyperparameter values given for method ``name``."""
        return dict(dict(self.methods).get(name, ()))

    def axes(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Swept settings as (label, values): ``('epochs', (50, 100))``, ``('nemo.alpha', (0.5, 1.5))``."""
        found = [(key, value) for key, value in self.recipe if isinstance(value, tuple)]
        for method, values in self.methods:
            found += [(f"{method}.{key}", value) for key, value in values if isinstance(value, tuple)]
        return found

    def variants(self) -> list[Overrides]:
        """One ``Overrides`` per combination of the swept values (just ``[self]`` without a sweep)."""
        axes = self.axes()
        if not axes:
            return [self]
        variants = []
        for combination in itertools.product(*(values for _, values in axes)):
            chosen = dict(zip((label for label, _ in axes), combination, strict=True))
            recipe = tuple((k, chosen.get(k, v)) for k, v in self.recipe)
            methods = tuple((m, tuple((k, chosen.get(f"{m}.{k}", v)) for k, v in values))
                            for m, values in self.methods)
            variants.append(Overrides(recipe, methods))
        return variants

    def only(self, method: str) -> Overrides:
        """The recipe values and ``method``'s own: what determines a cell of ``method``."""
        return Overrides(self.recipe, tuple((m, v) for m, v in self.methods if m == method))

    def labels(self) -> dict[str, str]:
        """Every value as ``{'epochs': '2', 'nemo.alpha': '0.5'}`` (for records and reports)."""
        labels = {key: _format(value) for key, value in self.recipe}
        for method, values in self.methods:
            labels.update({f"{method}.{key}": _format(value) for key, value in values})
        return labels


def parse_overrides(items: list[str] | tuple[str, ...]) -> Overrides:
    """Split ``--set key=value`` items into recipe and per-method values; a comma list is a sweep."""
    recipe: dict[str, Any] = {}
    methods: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"bad --set '{item}': write key=value, e.g. --set epochs=30 or --set mwt.alpha=0.5")
        key, raw = (s.strip() for s in item.split("=", 1))
        value = _parse_setting(key, raw)
        if "." in key:
            method, name = key.split(".", 1)
            if not method or not name:
                raise UsageError(f"bad --set '{item}': write method.key=value, e.g. --set mwt.alpha=0.5")
            methods.setdefault(method, {})[name] = value
        elif key in RECIPE_FIELDS:
            recipe[key] = value
        else:
            raise UsageError(f"unknown setting '{key}'{suggest(key, RECIPE_FIELDS)} (settings: "
                             f"{', '.join(RECIPE_FIELDS)}; method values as method.key)")
    return Overrides(tuple(sorted(recipe.items())),
                     tuple(sorted((m, tuple(sorted(v.items()))) for m, v in methods.items())))


def _parse_setting(key: str, raw: str) -> Any:
    """One value, or a tuple of distinct values for a comma list (a sweep)."""
    if "," not in raw:
        return _setting_value(key, raw)
    values = tuple(dict.fromkeys(_setting_value(key, v) for v in raw.split(",") if v.strip()))
    if not values:
        raise UsageError(f"--set {key}: no value given")
    return values if len(values) > 1 else values[0]


def _setting_value(key: str, raw: str) -> Any:
    """``parse_value``, refusing a number too large for a float (1e400 would become inf) in its own words."""
    value = parse_value(raw)
    if isinstance(value, float) and math.isinf(value) and "inf" not in raw.lower():
        raise UsageError(f"bad value for {key}: {raw.strip()} is out of range for a number (at most about 1.8e308)")
    return value


def settings_from_table(table: dict[str, Any], prefix: str = "") -> list[str]:
    """A TOML ``[set]`` table as ``key=value`` items; nested tables are methods, arrays are sweeps."""
    items = []
    for key, value in table.items():
        if isinstance(value, dict):
            if prefix:
                raise UsageError(f"config [set.{prefix.rstrip('.')}]: '{key}' cannot be a table")
            items.extend(settings_from_table(value, f"{key}."))
        elif isinstance(value, list | tuple):  # a TOML array, or a Python list or tuple
            if not value or any(isinstance(v, (list, tuple, dict)) for v in value):
                raise UsageError(f"config [set] {prefix}{key}: a sweep is a list of plain values, got {value!r}")
            items.append(f"{prefix}{key}=" + ",".join(_format(v) for v in value))
        else:
            items.append(f"{prefix}{key}={_format(value)}")
    return items


def suggest(name: str, choices: tuple[str, ...] | list[str]) -> str:
    """'; did you mean 'x'?' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def coerce_fields(target: type, values: dict[str, Any], owner: str) -> dict[str, Any]:
    """Check ``values`` against the fields of dataclass ``target`` and convert them to the fields' types.

    ``owner`` names the thing being configured in error messages ('recipe', 'method mwt').
    """
    known = {f.name: f for f in dataclasses.fields(target)}
    converted = {}
    for key, value in values.items():
        if key not in known:
            raise UsageError(f"{owner} has no setting '{key}'{suggest(key, list(known))} "
                             f"(it has: {', '.join(known)})")
        converted[key] = _convert(value, _field_type(known[key]), key)
    return converted


def _field_type(f: dataclasses.Field) -> str:
    hint = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return hint.replace(" ", "")


def _convert(value: Any, hint: str, key: str) -> Any:
    base = hint.replace("|None", "").replace("None|", "")
    if (value is None or value == "none") and "None" in hint:
        return None
    wrong = UsageError(f"bad value for {key}: '{value}' is not {a_type(base)}")
    if base == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong
        return float(value)
    if base == "str":
        return str(value)
    return value
