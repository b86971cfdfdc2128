"""What a run is made of: the grid the user asked for and the parsed pieces of the command line.

Parsing is strict and early: a bad model argument, class id or ``--set`` key stops the run
before anything is trained, with one line that says what was wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.protocol.recipe import RECIPE_FIELDS
from bench.refs import Args, Ref, _format, parse_refs, parse_value


def parse_task(text: str) -> tuple[int, ...]:
    """'0,1' -> (0, 1): the target classes of one sub-task."""
    try:
        classes = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise UsageError(f"bad task '{text}': give class ids separated by commas, e.g. --tasks 0,1") from None
    if not classes:
        raise UsageError("a task needs at least one class id, e.g. --tasks 0,1")
    if len(set(classes)) != len(classes):
        raise UsageError(f"task '{text}' names a class twice")
    return classes


def parse_csv(text: str, cast: type, what: str) -> tuple:
    """'0,1,2' -> (0, 1, 2) with a one-line error naming ``what``."""
    try:
        return tuple(cast(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"bad {what} '{text}': expected {cast.__name__} values separated by commas") from None


@dataclass(frozen=True)
class Overrides:
    """``--set`` values: recipe fields (``epochs=30``) and method hyperparameters (``mwt.alpha=0.5``)."""

    recipe: Args = ()
    methods: tuple[tuple[str, Args], ...] = ()

    def for_method(self, name: str) -> dict[str, Any]:
        """Raw hyperparameter values given for method ``name``."""
        return dict(dict(self.methods).get(name, ()))


def parse_overrides(items: list[str] | tuple[str, ...]) -> Overrides:
    """Split ``--set key=value`` items into recipe and per-method values (values still raw)."""
    recipe: dict[str, Any] = {}
    methods: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"bad --set '{item}': write key=value, e.g. --set epochs=30 or --set mwt.alpha=0.5")
        key, value = (s.strip() for s in item.split("=", 1))
        if "." in key:
            method, name = key.split(".", 1)
            methods.setdefault(method, {})[name] = parse_value(value)
        elif key in RECIPE_FIELDS:
            recipe[key] = parse_value(value)
        else:
            raise UsageError(f"unknown setting '{key}'{_suggest(key, RECIPE_FIELDS)} (settings: "
                             f"{', '.join(RECIPE_FIELDS)}; method values as method.key)")
    return Overrides(tuple(sorted(recipe.items())),
                     tuple(sorted((m, tuple(sorted(v.items()))) for m, v in methods.items())))


def _suggest(name: str, choices: tuple[str, ...] | list[str]) -> str:
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
            raise UsageError(f"{owner} has no setting '{key}'{_suggest(key, list(known))} "
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
    wrong = UsageError(f"bad value for {key}: '{value}' is not {'an' if base == 'int' else 'a'} {base}")
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


DEFAULT_METHODS = ("standard", "mwt", "nemo")
DEFAULT_MODELS = ("simcnn:width=0.25", "vit_s:depth=4,width=0.25")
DEFAULT_TASKS = ("0,1", "2,3,4")


@dataclass(frozen=True)
class GridConfig:
    """Everything ``bench run`` was asked to do: the grid axes and the run-wide options."""

    methods: tuple[str, ...]
    models: tuple[Ref, ...]
    datasets: tuple[Ref, ...]
    seeds: tuple[int, ...] = (0,)
    tasks: tuple[tuple[int, ...], ...] = ((0, 1),)
    thresholds: tuple[float, ...] = (0.9,)
    preset: str = "smoke"
    overrides: Overrides = field(default_factory=Overrides)
    out: Path = Path("runs")
    data_root: Path | None = None
    download: bool = False
    device: str = "auto"
    plugins_dir: Path | None = None
    quiet: bool = False


@dataclass(frozen=True)
class CellConfig:
    """One grid cell (method x model x dataset x seed) with the run-wide options: ``run_cell``'s input."""

    method: str
    model: Ref
    dataset: Ref
    seed: int
    grid: GridConfig
    record: bool = True  # False for a dependency trained only for others (a DeiT teacher)

    @property
    def label(self) -> str:
        """'nemo / vit_s:depth=4 / digits / seed 0'."""
        return f"{self.method} / {self.model} / {self.dataset} / seed {self.seed}"


def read_config_file(path: Path) -> dict[str, Any]:
    """Options from a TOML file: the ``bench run`` option names as keys (``methods = ["mwt"]``)."""
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = [key for key in config if key not in CONFIG_KEYS]
    if unknown:
        raise UsageError(f"config file {path}: unknown option '{unknown[0]}'{_suggest(unknown[0], CONFIG_KEYS)} "
                         f"(options: {', '.join(CONFIG_KEYS)})")
    return config


CONFIG_KEYS = ("methods", "models", "datasets", "seeds", "tasks", "thresholds", "preset", "set", "out",
               "data_root", "download", "device", "executor", "plugins_dir", "quiet")


def flatten_settings(table: dict[str, Any], prefix: str = "") -> list[str]:
    """A TOML ``[set]`` table as ``key=value`` items; nested tables are methods (``[set.mwt] alpha = 0.5``)."""
    items = []
    for key, value in table.items():
        if isinstance(value, dict):
            items.extend(flatten_settings(value, f"{prefix}{key}."))
        else:
            items.append(f"{prefix}{key}={_format(value)}")
    return items


def _listed(given: tuple[str, ...], config: dict[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Command-line values, else the config file's (a list or a comma-separated string), else ``default``."""
    if given:
        return tuple(given)
    if key not in config:
        return default
    value = config[key]
    if not isinstance(value, list):
        return tuple(v.strip() for v in str(value).split(",") if v.strip())
    return tuple(",".join(str(c) for c in v) if isinstance(v, list) else str(v) for v in value)


def grid_from_options(options: dict[str, Any], config: dict[str, Any]) -> GridConfig:
    """The grid of ``bench run``: command-line ``options`` first, then the ``--config`` file, then defaults.

    List options arrive as tuples of strings (empty when not given), the others as None when not given.
    """
    def scalar(key: str, default: Any) -> Any:
        return options[key] if options.get(key) not in (None, False) else config.get(key, default)

    def path(key: str) -> Path | None:
        value = scalar(key, None)
        return Path(value) if value is not None else None

    return GridConfig(
        methods=_listed(options["methods"], config, "methods", DEFAULT_METHODS),
        models=tuple(parse_refs(_listed(options["models"], config, "models", DEFAULT_MODELS))),
        datasets=tuple(parse_refs(_listed(options["datasets"], config, "datasets", ("digits",)))),
        seeds=parse_csv(",".join(_listed(options["seeds"], config, "seeds", ("0",))), int, "seeds"),
        tasks=tuple(parse_task(t) for t in _listed(options["tasks"], config, "tasks", DEFAULT_TASKS)),
        thresholds=parse_csv(",".join(_listed(options["thresholds"], config, "thresholds", ("0.9",))), float,
                             "thresholds"),
        preset=scalar("preset", "smoke"),
        overrides=parse_overrides(options["set"] or tuple(flatten_settings(config.get("set", {})))),
        out=path("out") or Path("runs"),
        data_root=path("data_root"),
        download=bool(scalar("download", False)),
        device=scalar("device", "auto"),
        plugins_dir=path("plugins_dir"),
        quiet=bool(scalar("quiet", False)),
    )
