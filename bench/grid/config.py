"""What a run is made of: the grid the user asked for, its cells, and the parsing of its options.

Parsing is strict and early: a bad model argument, class id, seed, threshold or ``--set`` key stops
the run before anything is trained, with one line that says what was wrong.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.grid.options import CONFIG_KEYS
from bench.grid.scenarios import Scenarios, parse_scenarios
from bench.grid.settings import Overrides, parse_overrides, suggest
from bench.record import CONTROL_KINDS
from bench.refs import Ref, parse_refs

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class GridConfig:
    """Everything ``bench run`` was asked to do: the grid axes and the run-wide options.

    ``tasks`` are kept as sets: each task's classes sorted, a task given twice (in any order) kept once.
    """

    methods: tuple[str, ...]
    models: tuple[Ref, ...]
    datasets: tuple[Ref, ...]
    seeds: tuple[int, ...] = (0,)
    tasks: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3, 4))
    thresholds: tuple[float, ...] = (0.9,)
    scenarios: Scenarios = field(default_factory=Scenarios)
    controls: tuple[str, ...] = ()
    preset: str = "smoke"
    overrides: Overrides = field(default_factory=Overrides)
    out: Path = Path("runs")
    data_root: Path | None = None
    download: bool = False
    device: str = "auto"
    plugins_dir: Path | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(dict.fromkeys(canonical_task(t) for t in self.tasks)))


def canonical_task(classes: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """A task is a set of classes: (1, 0) and (0, 1) are the one task (0, 1), computed and counted once."""
    return tuple(sorted(set(classes)))


@dataclass(frozen=True)
class CellConfig:
    """One grid cell (method x model x dataset x seed x setting variant): ``run_cell``'s input.

    ``overrides`` are this cell's own ``--set`` values (one variant of a sweep, restricted to the
    recipe and this method); ``record`` is False for a dependency trained only for others.
    """

    method: str
    model: Ref
    dataset: Ref
    seed: int
    grid: GridConfig
    overrides: Overrides = field(default_factory=Overrides)
    record: bool = True

    @property
    def label(self) -> str:
        """'nemo / vit_s:depth=4 / digits / seed 0 / nemo.alpha=0.5' (the swept values, if any)."""
        swept = {label for label, _ in self.grid.overrides.axes()}
        values = " ".join(f"{k}={v}" for k, v in self.overrides.labels().items() if k in swept)
        return f"{self.method} / {self.model} / {self.dataset} / seed {self.seed}" + (f" / {values}" if values else "")


def parse_task(text: str, one_class: bool = False) -> tuple[int, ...]:
    """'0,1' -> (0, 1): the target classes of one sub-task (two or more unless ``one_class``), in the order
    given (``bench export`` orders its logits so; the grid keeps a task as a set, ``canonical_task``)."""
    try:
        classes = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise UsageError(f"bad task '{text}': give class ids separated by commas, e.g. --tasks 0,1") from None
    if not classes:
        raise UsageError("a task needs at least two class ids, e.g. --tasks 0,1")
    if len(set(classes)) != len(classes):
        raise UsageError(f"task '{text}' names a class twice")
    if any(c < 0 for c in classes):
        raise UsageError(f"task '{text}': class ids cannot be negative")
    if len(classes) == 1 and not one_class:
        raise UsageError(f"task '{text}' has one class, so any module scores 100% on it; give two or more "
                         "classes, or pass --one-class-tasks to run it anyway")
    return classes


def parse_csv(text: str, cast: type, what: str) -> tuple:
    """'0,1,2' -> (0, 1, 2) with a one-line error naming ``what``; empty lists are refused."""
    try:
        values = tuple(dict.fromkeys(cast(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise UsageError(f"bad {what} '{text}': expected {cast.__name__} values separated by commas") from None
    if not values:
        raise UsageError(f"--{what} is empty: give at least one value")
    return values


def read_config_file(path: Path) -> dict[str, Any]:
    """Options from a TOML file: the ``bench run`` option names as keys (``methods = ["mwt"]``)."""
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = [key for key in config if key not in CONFIG_KEYS]
    if unknown:
        raise UsageError(f"config file {path}: unknown option '{unknown[0]}'{suggest(unknown[0], CONFIG_KEYS)} "
                         f"(options: {', '.join(CONFIG_KEYS)})")
    return config


def grid_from_options(values: dict[str, Any]) -> GridConfig:
    """The grid of ``bench run`` from merged option values (``bench.grid.options.merge_options``)."""
    methods = tuple(m.strip() for m in ",".join(values["methods"]).split(",") if m.strip())
    if not methods:
        raise UsageError("--methods is empty: give at least one method (bench list methods)")
    seeds = parse_csv(",".join(values["seeds"]), int, "seeds")
    bad_seed = next((s for s in seeds if not 0 <= s <= MAX_SEED), None)
    if bad_seed is not None:
        raise UsageError(f"seed {bad_seed} is out of range (0 to {MAX_SEED})")
    thresholds = parse_csv(",".join(values["thresholds"]), float, "thresholds")
    if any(not 0 < t <= 1 for t in thresholds):
        raise UsageError(f"thresholds must be in (0, 1], got {', '.join(map(str, thresholds))}")
    settings = list(values["set"])
    settings += [f"{flag}=true" for flag in ("deterministic", "compile") if values[flag]]
    return GridConfig(
        methods=methods,
        models=_refs(values["models"], "models"),
        datasets=_refs(values["datasets"], "datasets"),
        seeds=seeds,
        tasks=tuple(parse_task(t, values["one_class_tasks"]) for t in values["tasks"]),
        thresholds=thresholds,
        scenarios=parse_scenarios(tuple(parse_refs(values["scenario"]))),
        controls=parse_controls(values["controls"]),
        preset=values["preset"],
        overrides=parse_overrides(settings),
        out=values["out"],
        data_root=values["data_root"],
        download=values["download"],
        device=values["device"],
        plugins_dir=values["plugins_dir"],
        quiet=values["quiet"],
    )


def parse_controls(items: tuple[str, ...]) -> tuple[str, ...]:
    """('random,magnitude',) -> ('random', 'magnitude'); 'none' (alone) -> (); a one-line error otherwise."""
    names = tuple(dict.fromkeys(n.strip() for n in ",".join(items).split(",") if n.strip()))
    if names == ("none",):
        return ()
    for name in names:
        if name not in CONTROL_KINDS:
            raise UsageError(f"unknown control '{name}'{suggest(name, CONTROL_KINDS)} (--controls takes "
                             f"{', '.join(CONTROL_KINDS)}, or none)")
    if not names:
        raise UsageError("--controls is empty: give random, magnitude or none")
    return names


def _refs(items: tuple[str, ...], what: str) -> tuple[Ref, ...]:
    refs = tuple(dict.fromkeys(parse_refs(items)))
    if not refs:
        raise UsageError(f"--{what} is empty: give at least one (bench list {what})")
    return refs
