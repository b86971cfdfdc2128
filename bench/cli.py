"""The ``bench`` command line: run, report, list, plugins, show (thin: parse, call, print).

Bad input never prints a traceback: errors the user can fix become one line and exit code 2
(bad usage) or 1 (a run failed).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bench.errors import BenchError, Terminated
from bench.grid.options import click_options
from bench.importers.command import import_checkpoint
from bench.report import TABLES

FORMATS = ("table", "md", "csv", "json", "html", "latex")
EXPORT_FORMATS = ("pt2", "onnx")


class LazyGroup(click.Group):
    """A click group that loads plugin commands only when a name is not built in (or for --help)."""

    _plugins: object | None = None
    _builtin: frozenset[str] = frozenset()

    def _add_plugin_commands(self) -> None:
        from bench.errors import PluginError
        from bench.plugins.manager import get_plugins

        plugins = get_plugins()
        if self._plugins is plugins:
            return
        if not self._builtin:
            self._builtin = frozenset(self.commands)
        for name in set(self.commands) - self._builtin:  # commands of plugins loaded before a reset
            del self.commands[name]
        self._plugins = plugins
        for plugin, call in plugins.call_each("register_commands", cli=self):
            try:
                call()
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                raise PluginError(f"plugin '{plugin}' failed in register_commands: {message}") from None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands:
            self._add_plugin_commands()
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; Ctrl-C leaves as click's Abort, without the blank line click prints for it (and an
        EOFError, which click would take for Ctrl-D, as the error it is)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated), which main tells apart by the cause
            cause = exc if isinstance(exc, Terminated) else None
            raise click.Abort() from cause
        except EOFError as exc:
            raise RuntimeError(f"unexpected end of a file: {exc}") from exc


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="modbench")
def cli() -> None:
    """modbench: compare DNN modularization methods under one protocol.

    \b
    Example:
      bench run --methods nemo,mwt --models vgg16,vit --preset smoke
      bench report
    """


@cli.command()
@click_options
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="Read options from a TOML file (keys as the options, e.g. methods = [\"mwt\"]; [set] table).")
def run(config_file: Path | None, **given: Any) -> int:
    """Train, modularize and reuse every cell of a grid, then print the comparison.

    \b
    With no options: the built-in methods on a small CNN and a small ViT, on the
    offline digits data set, preset smoke (minutes on a laptop CPU).
    \b
    Examples:
      bench run
      bench run --methods nemo,mwt --models vgg16,vit --preset smoke
      bench run --methods mwt --models resnet18:width=0.25 --tasks 0,1 --set mwt.beta=1.0
      bench run --methods nemo --set nemo.alpha=0.5,1.0,1.5 --tasks 0,1   # a sweep: three cells
      bench run --scenario patch --seeds 0,1   # also patch a weak model; compose across the seeds
      bench run --methods mwt,nemo --seeds 0,1,2 --controls random,magnitude
      bench run --preset paper --datasets cifar10 --data-root ~/data --device cuda
    """
    from bench.api import run_values
    from bench.grid.config import read_config_file
    from bench.grid.options import merge_options

    config = read_config_file(config_file) if config_file else {}
    values = merge_options(given, config)
    records = run_values(values)
    if records:
        print_summary(records, f"modbench, {values['preset']} preset", values["out"])
    failed = [r for r in records if r.get("error") or r.get("last_error")]  # last_error: kept earlier figures
    if failed:
        click.echo(f"{len(failed)} of {len(records)} records failed; see their 'error' or 'last_error' field "
                   "(bench show RUN)", err=True)
        return 1
    return 0


def print_summary(records: list[dict[str, Any]], title: str, runs: Path | None = None) -> None:
    """The comparison table of the records just written, on standard output, and the scenarios' tables (the
    patched records', and the compositions across models under ``runs`` of these records' models)."""
    from rich.console import Console

    from bench.report.build import report_sections
    from bench.report.load import compositions_of
    from bench.report.tables import rich_table, summarize, task_rows

    console = Console(width=None if sys.stdout.isatty() else 140)
    rows = task_rows(records)
    console.print(rich_table(summarize(rows), title=title))
    compositions = compositions_of(runs, records) if runs is not None else []
    for section in report_sections(records, rows, compositions)[1:]:
        console.print(section.terminal())


@cli.command()
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Runs directory to read records from.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Write to this file instead of the terminal.")
@click.option("--plots", type=click.Path(path_type=Path), help="Also draw comparison plots (PNG) into this folder.")
@click.option("--compare", metavar="A,B", help="Paired difference A − B of every figure between two methods (or a "
              "method and its control: mwt,mwt:random), with a 95% bootstrap interval.")
@click.option("--table", type=click.Choice(TABLES), help="Only this table: the reused modules, their lead over the "
              "controls, the patching scenario or the modules composed across models (csv and json hold one table: "
              "the modules unless this says).")
def report(runs: Path, fmt: str, out: Path | None, plots: Path | None, compare: str | None, table: str | None) -> int:
    """Render the comparison tables from the records under a runs directory.

    The reused modules' table, then (where the runs have them) each method's lead over its controls, the
    patching scenario's and the modules composed across models. A record file that cannot be read is named
    in a warning and skipped.

    \b
    Examples:
      bench report
      bench report --format md --out reports/digits.md --plots reports/
      bench report --runs runs/ --format latex
      bench report --compare mwt,nemo
      bench report --table patch --format csv
      bench report --compare mwt,mwt:random        # MwT's module against as many random units
    """
    from rich.console import Console

    from bench.report.build import build_report
    from bench.report.load import load_records
    from bench.report.output import WIDTH, as_text, check_targets, write_text

    check_targets(out, plots)
    loaded = load_records(runs)
    for problem in loaded.skipped:
        click.echo(f"warning: skipped {problem}", err=True)
    for problem in loaded.blanked:
        click.echo(f"warning: {problem}", err=True)
    built = build_report(loaded.records, runs, fmt, compare, plots, loaded.compositions, table)
    for path in built.plots:
        click.echo(f"wrote {path}", err=True)
    if out:
        write_text(out, built.content if isinstance(built.content, str) else as_text(built.content))
        click.echo(f"wrote {out}", err=True)
    elif isinstance(built.content, str):
        click.echo(built.content, nl=False)
    else:
        Console(width=None if sys.stdout.isatty() else WIDTH).print(built.content)
    return 0


@cli.command(name="list")
@click.argument("kind", required=False, type=click.Choice(["methods", "models", "datasets"]))
@click.argument("pattern", required=False, default="*")
@click.option("--plugins-dir", type=click.Path(path_type=Path), help="Also load plugins from the .py files here.")
def list_(kind: str | None, pattern: str, plugins_dir: Path | None) -> int:
    """List registered methods, models and data sets, with one-line descriptions.

    \b
    Examples:
      bench list
      bench list models 'vit*'
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from bench.plugins.manager import get_plugins

    plugins = get_plugins(plugins_dir)
    console = Console()
    for name in [kind] if kind else ["methods", "models", "datasets"]:
        registry = getattr(plugins, name)
        table = Table(title=name, title_justify="left")
        for column in ("name", "description", "from plugin"):
            table.add_column(column)
        for item_name in registry.match(pattern):
            item = registry.get(item_name)
            aliases = registry.aliases_of(item_name)
            label = item_name + (f" ({', '.join(aliases)})" if aliases else "")
            table.add_row(Text(label), Text(_describe(name, item)), Text(registry.owner[item_name]))
        console.print(table)
    return 0


def _describe(kind: str, item: Any) -> str:
    if kind == "methods":
        return f"{item.description} [{', '.join(item.families)}]"
    if kind == "models":
        args = ", ".join(item.arguments())
        return f"{item.description} [{item.family}; args: {args}]"
    classes = "classes from the files" if item.num_classes is None else f"{item.num_classes} classes"
    return f"{item.description} [{classes}]"


@cli.command()
@click.option("--plugins-dir", type=click.Path(path_type=Path), help="Also load plugins from the .py files here.")
def plugins(plugins_dir: Path | None) -> int:
    """Show loaded plugins, where each comes from and which hooks it implements.

    \b
    Example:
      MODBENCH_LOAD_PLUGINS= bench plugins     # built-ins only
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from bench.plugins.manager import get_plugins

    state = get_plugins(plugins_dir)
    table = Table(title="plugins", title_justify="left")
    for column in ("plugin", "from", "hooks"):
        table.add_column(column)
    for name, origin in state.origins.items():
        table.add_row(Text(name), Text(origin), Text(", ".join(state.hooks_of(name))))
    Console().print(table)
    return 0


@cli.command()
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON (older schemas upgraded).")
def show(run_path: Path, runs: Path, as_json: bool) -> int:
    """Show one run's record, readable. RUN is a record file, its folder, or a run_id (or a composition.json).

    Reads the record only, and checks its reused modules' files: nothing is computed.

    \b
    Examples:
      bench show runs/digits/simcnn-width0.25/mwt/3f2a9c1b0d4e/t0.9
      bench show digits/simcnn-width0.25/mwt/3f2a9c1b0d4e/t0.9 --json
      bench show runs/digits/compositions/mwt/5c1e0a9b2f3d/composition.json
    """
    import json

    from rich.console import Console

    from bench.report.load import blank_nonfinite, nonfinite_warning
    from bench.report.show import find_composition, find_record, module_problems, render_composition, render_record

    composition = find_composition(run_path, runs)
    if composition is not None:
        if as_json:
            click.echo(json.dumps(composition, indent=2))
        else:
            Console().print(render_composition(composition))
        return 0
    record = find_record(run_path, runs)
    directory = _runs_root(run_path, runs, record["run_id"]) / record["run_id"]
    blanked = blank_nonfinite(record, missing=None)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        Console().print(render_record(record))
    if blanked:
        click.echo(f"warning: {nonfinite_warning(directory / 'record.json', blanked)}", err=True)
    for problem in module_problems(directory, record) if directory.is_dir() else []:
        click.echo(f"warning: {problem}", err=True)
    return 0


@cli.command()
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--task", "task", required=True, help="The task's classes, as given to bench run: 0,1.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The file to write (.pt2 or .onnx).")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS),
              help="pt2 (a torch.export program) or onnx (needs modbench[onnx]); default: --out's suffix, else pt2.")
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def export(run_path: Path, task: str, out: Path, fmt: str | None, runs: Path) -> int:
    """Save a reused module as a self-contained torch.export program (.pt2) or ONNX model (.onnx).

    The module takes float images in [0, 1], shape (batch, 3, 32, 32), and returns logits over
    the task's classes in the order given; load it with torch.export.load(path).module(), or run
    the ONNX form with onnxruntime.InferenceSession(path).run(None, {"images": x}).

    \b
    Examples:
      bench export runs/digits/simcnn-width0.25/mwt/3f2a9c1b0d4e/t0.9 --task 0,1 --out module.pt2
      bench export runs/digits/simcnn-width0.25/mwt/3f2a9c1b0d4e/t0.9 --task 0,1 --format onnx --out module.onnx
    """
    from bench.grid.config import parse_task
    from bench.report.export import export_module
    from bench.report.show import find_record

    record = find_record(run_path, runs)
    runs_root = _runs_root(run_path, runs, record["run_id"])
    fmt = fmt or ("onnx" if out.suffix == ".onnx" else "pt2")
    path = export_module(record, parse_task(task), out, runs_root, fmt)
    click.echo(f"wrote {path}", err=True)
    return 0


def _runs_root(run_path: Path, runs: Path, run_id: str) -> Path:
    """The runs directory holding ``run_id``, whether RUN was given as a path or as a run_id."""
    resolved = run_path.resolve()
    if resolved.name == "record.json":
        resolved = resolved.parent
    parts = len(Path(run_id).parts)
    if resolved.parts[-parts:] == Path(run_id).parts:
        return Path(*resolved.parts[:-parts])
    return runs


cli.add_command(import_checkpoint)


def main() -> None:
    """Entry point of the ``bench`` console script."""
    try:
        with sigterm_interrupts():
            code = cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:  # one line like every other error, with where the help is
        where = exc.ctx.command_path if exc.ctx else "bench"
        click.echo(f"error: {exc.format_message().rstrip('.')} (see {where} --help)", err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except (click.Abort, KeyboardInterrupt) as exc:  # click turns Ctrl-C into Abort
        terminated = isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)
        what = "terminated" if terminated else "interrupted"
        click.echo(f"{what}: finished stages are kept; run the same command again to resume", err=True)
        code = 128 + signal.SIGTERM if terminated else 130
    except BenchError as exc:
        click.echo(f"error: {exc}", err=True)
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While a command runs, SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main thread, so that
    ``kill``, ``timeout`` or a scheduler's preemption end it as Ctrl-C does: workers stopped, finished stages
    kept, one line said. The previous handler comes back afterwards (tests call ``main`` in their process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()
