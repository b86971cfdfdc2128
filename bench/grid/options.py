"""The options of ``bench run``, each declared once: name, kind, default and help.

The click options of ``bench run``, the keys a ``--config`` TOML file may hold and the defaults
all come from ``RUN_OPTIONS``; ``merge_options`` applies the precedence command line > config
file > default and returns plain Python values, checked for their kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench.errors import UsageError
from bench.grid.settings import settings_from_table, suggest


@dataclass(frozen=True)
class RunOption:
    """One option: ``name`` is its TOML key and, with dashes, its ``--flag``.

    Kinds: 'list' (comma-separated values), 'refs' (names with arguments, repeatable), 'tasks'
    (one task per use, repeatable), 'settings' (``key=value``, repeatable), 'text', 'path', 'flag'.
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    integer: bool = False  # a 'text' option that also takes a number: a config file may write it as an integer

    @property
    def flag(self) -> str:
        """The command-line spelling: ``--data-root``."""
        return "--" + self.name.replace("_", "-")

    @property
    def repeatable(self) -> bool:
        """Whether the option may be given several times on the command line."""
        return self.kind in ("refs", "tasks", "settings")

    def help_text(self) -> str:
        """The help line with its default."""
        if self.kind == "flag" or self.default in (None, ()):
            return self.help
        if isinstance(self.default, str):
            shown = self.default
        elif self.kind == "tasks":
            shown = " ".join(f"{self.flag} {task}" for task in self.default)
        else:
            shown = (" and " if self.kind == "refs" else ",").join(self.default)
        return f"{self.help} (default: {shown})"


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption("methods", "list", ("standard", "mwt", "nemo", "cnnsplitter"), "Methods, comma separated."),
    RunOption("models", "refs", ("simcnn:width=0.25", "vit_s:depth=2,width=0.25"),
              "Models with arguments, e.g. vgg16:width=0.25,vit_s:depth=4."),
    RunOption("datasets", "refs", ("digits",), "Data sets with options, e.g. synthetic:size=500."),
    RunOption("seeds", "list", ("0",), "Seeds, comma separated."),
    RunOption("tasks", "tasks", ("0,1", "2,3,4"),
              "Target classes of one sub-task, repeatable: --tasks 0,1 --tasks 2,3."),
    RunOption("thresholds", "list", ("0.9",), "Module thresholds, comma separated (one trained model serves all)."),
    RunOption("scenario", "refs", (), "Also run a reuse scenario: patch (a weak model patched with the strong "
              "model's module of each task class; patch:fraction=0.1,epochs=20,without=C)."),
    RunOption("controls", "list", ("none",), "Controls of every reused module, comma separated: random, magnitude "
              "(as many units per layer, chosen at random or by weight L1 norm, reused the same way), or none."),
    RunOption("preset", "text", "smoke", "Training recipes: smoke, paper or reference."),
    RunOption("set", "settings", (), "Change a recipe value (epochs=30) or a method's (nemo.alpha=0.2), "
              "repeatable; a comma list sweeps it (nemo.alpha=0.5,1.5)."),
    RunOption("out", "path", "runs", "Runs directory."),
    RunOption("data_root", "path", None, "Where CIFAR/SVHN files live (default: ~/.cache/modbench/data)."),
    RunOption("download", "flag", False, "Download missing data sets (when the network allows)."),
    RunOption("device", "text", "auto", "auto (CUDA, then Apple mps, then CPU), cpu, cuda, cuda:N or mps."),
    RunOption("deterministic", "flag", False, "Deterministic kernels on GPUs (same as --set deterministic=true)."),
    RunOption("compile", "flag", False, "torch.compile the training step (same as --set compile=true)."),
    RunOption("executor", "text", "local", "Where cells run: local, ray or slurm.", ("local", "ray", "slurm")),
    RunOption("workers", "text", "auto", "Local worker processes: auto (one per core, at most 4, on a CPU; "
              "1 on a GPU) or a number; 1 computes in this process with every core.", integer=True),
    RunOption("ray_address", "text", None, "Join this Ray cluster (executor ray)."),
    RunOption("slurm_partition", "text", None, "Slurm partition (executor slurm)."),
    RunOption("plugins_dir", "path", None, "Also load plugins from the .py files in this folder."),
    RunOption("log", "list", (), "Loggers to feed, comma separated: tensorboard."),
    RunOption("one_class_tasks", "flag", False, "Accept tasks of a single class (their accuracy is trivially 100%)."),
    RunOption("retry_failed", "flag", False, "Run only the cells whose record holds an error."),
    RunOption("dry_run", "flag", False, "List the cells the grid would compute, and an estimate of its time."),
    RunOption("quiet", "flag", False, "No progress bars, warnings only."),
)
OPTIONS = {option.name: option for option in RUN_OPTIONS}
CONFIG_KEYS = tuple(OPTIONS)


def click_option(option: RunOption) -> Callable:
    """The click decorator of one run option (its default is applied later, by ``merge_options``)."""
    kwargs: dict[str, Any] = {"help": option.help_text()}
    if option.kind == "flag":
        kwargs["is_flag"] = True
        kwargs["default"] = None
    elif option.repeatable:
        kwargs["multiple"] = True
    if option.kind == "path":
        kwargs["type"] = click.Path(path_type=Path)
    return click.option(option.flag, option.name, **kwargs)


def click_options(command: Callable) -> Callable:
    """Decorate a click command with every run option."""
    for option in reversed(RUN_OPTIONS):
        command = click_option(option)(command)
    return command


def merge_options(given: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Every run option's value: the command line's when given, else the config file's, else the default.

    List-like options come back as tuples of strings (tasks as one string per task), paths as
    ``Path`` (or None), flags as bools.
    """
    values = {}
    for option in RUN_OPTIONS:
        value = given.get(option.name)
        if value in (None, ()):
            value = _from_config(option, config[option.name]) if option.name in config else option.default
        values[option.name] = _normalised(option, value)
    return values


def python_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Run options given as Python values, in the command line's form (``merge_options``'s ``given``).

    The Python API's keywords are the options' names and take what a config file holds: lists
    (``methods=["mwt"]``, ``seeds=[0, 1]``), tasks as class lists (``tasks=[[0, 1], [2, 3]]``), ``set``
    as a dict (``{"epochs": 1, "nemo.alpha": [0.5, 1.5]}``), paths as ``str`` or ``Path``. An unknown
    name or a value of the wrong kind is a one-line UsageError; None leaves the option to its default.
    """
    unknown = [name for name in values if name not in OPTIONS]
    if unknown:
        raise UsageError(f"unknown option '{unknown[0]}'{suggest(unknown[0], CONFIG_KEYS)} "
                         f"(options: {', '.join(CONFIG_KEYS)})")
    return {name: _from_config(OPTIONS[name], value, f"option '{name}'")
            for name, value in values.items() if value is not None}


def _normalised(option: RunOption, value: Any) -> Any:
    if option.choices and value not in option.choices:
        raise UsageError(f"{option.flag}: '{value}' is not one of {', '.join(repr(c) for c in option.choices)}")
    if option.kind == "path":
        return Path(value) if value is not None else None
    if option.kind == "flag":
        return bool(value)
    if option.kind in ("list", "refs", "settings"):
        return tuple(value) if not isinstance(value, str) else (value,)
    if option.kind == "tasks":
        return tuple(value)
    return value


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _plain(value: Any) -> bool:
    """A string or a number (not a bool): what a list option's items and a text option may be."""
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _from_config(option: RunOption, value: Any, where: str | None = None) -> Any:
    """A config file's (or the Python API's) value checked against the option's kind (one-line errors naming it).

    An empty list is given on as the command line's empty value (``--methods ""``), so it meets the same error.
    """
    where = where or f"config option '{option.name}'"
    if option.kind == "flag":
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value
    if option.kind in ("list", "refs", "tasks") and _is_list(value) and not value:
        return ("",)
    if option.kind == "tasks":
        return _config_tasks(value, where)
    if option.kind == "settings":
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a table (a dict in Python), e.g. [set] epochs = 30 or "
                             "[set.nemo] alpha = [0.5, 1.5]")
        return tuple(settings_from_table(value))
    if option.kind in ("list", "refs"):
        if _is_list(value) and all(_plain(v) for v in value):
            return tuple(str(v) for v in value)
        if _plain(value):
            return (str(value),)
        raise UsageError(f"{where} must be a list or a comma-separated string, got {value!r}")
    if option.kind == "path" and isinstance(value, os.PathLike):
        return value
    if option.integer and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # workers = 2, as --workers 2
    if not isinstance(value, str):
        kind = "a string or an integer" if option.integer else "a string"
        raise UsageError(f"{where} must be {kind}, got {value!r}")
    return value


def _config_tasks(value: Any, where: str) -> tuple[str, ...]:
    """Tasks in TOML: "0,1" or [0, 1] is one task; [[0, 1], [2, 3]] or ["0,1", "2,3"] are several."""
    if isinstance(value, str):
        return (value,)
    if _is_list(value) and all(_class_id(v) for v in value):
        return (",".join(str(v) for v in value),)
    if _is_list(value):
        tasks = []
        for task in value:
            if isinstance(task, str):
                tasks.append(task)
            elif _is_list(task) and all(_class_id(c) for c in task):
                tasks.append(",".join(str(c) for c in task))
            else:
                raise UsageError(f"{where}: cannot read task {task!r} (write \"0,1\" or [0, 1])")
        return tuple(tasks)
    raise UsageError(f"{where} must be \"0,1\", [0, 1] or a list of tasks like [[0, 1], [2, 3, 4]], got {value!r}")


def _class_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
