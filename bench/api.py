"""The Python API: ``run``, ``results`` and ``compare``, what ``bench run`` and ``bench report`` do, for notebooks.

``run`` takes ``bench run``'s options, declared once in ``bench.grid.options``: ``--data-root`` is
``data_root=``, and values are what a ``--config`` TOML file holds (lists, class lists for
``tasks``, a dict for ``set``). The command line's ``run`` is a thin layer over ``run_values``, so
the same grid gives the same records either way. Bad input raises the ``bench.errors`` error whose
message is the line the command line prints.

    import bench
    records = bench.run(methods=["standard", "mwt"], models=["simcnn:width=0.125"], datasets=["synthetic"],
                        tasks=[[0, 1]], set={"epochs": 1}, out="runs")
    table = bench.results("runs")                       # bench report --format csv, as a DataFrame
    diffs = bench.compare("runs", "mwt", "standard")    # bench report --compare mwt,standard
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UsageError
from bench.grid.config import grid_from_options, read_config_file
from bench.grid.options import RUN_OPTIONS, RunOption, merge_options, python_options
from bench.record import Record
from bench.report.compare import compare_methods
from bench.report.tables import raw_frame, summarize, task_rows

__all__ = ["compare", "results", "run"]

Source = str | os.PathLike | Iterable[Mapping[str, Any]] | pd.DataFrame


def run(config: str | os.PathLike | None = None, **options: Any) -> list[Record]:
    """Run a grid, as ``bench run`` does, and return the records written (a failed cell's holds ``error``).

    ``config`` is a TOML file as ``bench run --config`` reads; keyword options win over it. The
    keywords are generated from ``bench run``'s options (see the signature); ``dry_run=True`` prints
    the plan and returns no record.
    """
    file_values = read_config_file(Path(config)) if config is not None else {}
    return run_values(merge_options(python_options(options), file_values))


def run_values(values: dict[str, Any]) -> list[Record]:
    """Run the grid of merged option values (``bench.grid.options.merge_options``): ``bench run`` and ``run``."""
    grid = grid_from_options(values)
    if values["log"]:
        enable_loggers(values["log"])
    if values["dry_run"]:
        from bench.pipeline.plan import print_plan

        print_plan(grid)
        return []
    from rich.console import Console

    from bench.pipeline.runner import run_grid

    executor = values["executor"]
    settings = {"local": {"workers": values["workers"]}, "ray": {"address": values["ray_address"]},
                "slurm": {"partition": values["slurm_partition"]}}.get(executor, {})
    return run_grid(grid, executor, Console(stderr=True), {k: v for k, v in settings.items() if v},
                    values["retry_failed"])


def enable_loggers(names: tuple[str, ...]) -> None:
    """Switch on the named logger plugins for this run (``--log tensorboard``)."""
    from bench.loggers import tensorboard

    loggers = (tensorboard.NAME,)
    chosen = [n.strip() for n in ",".join(names).split(",") if n.strip()]
    unknown = [n for n in chosen if n not in loggers]
    if unknown:
        raise UsageError(f"unknown logger '{unknown[0]}' (choose {', '.join(loggers)})")
    if tensorboard.NAME in chosen:
        tensorboard.summary_writer()  # fails now, in one line, when the [tensorboard] extra is missing
    os.environ[tensorboard.ENV_VAR] = ",".join(chosen)


def results(source: Source = "runs", per_task: bool = False) -> pd.DataFrame:
    """The comparison as a DataFrame: the columns of ``bench report --format csv`` (one row per configuration).

    ``source`` is a runs directory or records (``run``'s return value). With ``per_task`` the raw
    figures come instead: one row per record and task, its configuration in ``cfg:<key>`` columns
    (what ``compare`` reads).
    """
    rows = _task_rows(source)
    return rows if per_task else raw_frame(summarize(rows))


def compare(source: Source, a: str, b: str) -> pd.DataFrame:
    """The paired differences ``a`` − ``b`` that ``bench report --compare a,b`` prints, raw.

    One row per (configuration pair, figure): ``pairs``, ``mean_diff``, the 95% bootstrap
    interval ``ci_low`` .. ``ci_high`` and a ``verdict``. ``source`` is a runs directory, records, or
    ``results(..., per_task=True)``.
    """
    return compare_methods(_task_rows(source), a, b)


def _task_rows(source: Source) -> pd.DataFrame:
    """One row per record and task, from a runs directory, records, or such rows already built."""
    if isinstance(source, pd.DataFrame):
        if "task" not in source or "config_key" not in source:
            raise UsageError("give compare() the per-task rows, results(source, per_task=True), or the runs "
                             "directory: the summary has no seeds and tasks to pair")
        return source
    records = _load(Path(source)) if isinstance(source, str | os.PathLike) else list(source)
    if not records:
        raise UsageError(f"no records in {source!r} (run bench.run() first, or give the runs directory)")
    return task_rows(records)


def _load(runs: Path) -> list[Record]:
    """The records under ``runs`` (as ``bench report`` reads them); a skipped file is a warning."""
    from bench.report.load import load_records

    loaded = load_records(runs)
    for problem in loaded.skipped:
        warnings.warn(f"skipped {problem}", stacklevel=3)
    if not loaded.records:
        raise UsageError(f"no records under {runs} (run `bench run` first, or pass --runs DIR)")
    return loaded.records


def _signature() -> inspect.Signature:
    """``run``'s signature: ``config`` and one keyword per run option, with its default."""
    params = [inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
    params += [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY,
                                 default=_shown_default(option))
               for option in RUN_OPTIONS]
    return inspect.Signature(params, return_annotation="list[Record]")


def _shown_default(option: RunOption) -> Any:
    """An option's default as the API takes it: a list for list-like options, a dict for ``set``."""
    if option.kind == "settings":
        return {}
    return list(option.default) if isinstance(option.default, tuple) else option.default


run.__signature__ = _signature()  # type: ignore[attr-defined]
run.__doc__ = (run.__doc__ or "") + "\n    Options:\n" + "\n".join(
    f"      {option.name}: {option.help_text()}" for option in RUN_OPTIONS)
