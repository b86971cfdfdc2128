"""The plugin API: one test per hook, failures reported by plugin name, and a real installed plugin."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from bench import hookspecs
from bench.cli import cli
from bench.data import DataBundle, DatasetSpec, TensorData, stratified_split
from bench.errors import PluginError, UsageError
from bench.hookspecs import hookimpl
from bench.models.cnn import simcnn
from bench.models.spec import ModelSpec
from bench.pipeline.runner import canonical_grid, run_grid
from bench.plugins import manager as plugins
from bench.protocol.method import Method
from bench.refs import Ref
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS, DummyMethod, MethodPlugin, make_tiny_grid, use_plugin

README = Path(__file__).resolve().parent.parent / "README.md"
REPO = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, f in vars(hookspecs).items() if hasattr(f, "modbench_spec"))


class Twin(DummyMethod):
    name = "twin"


class NoCompose(Method):
    """A method that forgot a stage."""

    name = "nocompose"

    def train(self, ctx):
        return None

    def modularize(self, ctx, trained):
        return None


# ----------------------------------------------------------------------------- one test per hook


def test_hook_register_methods():
    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(Twin())

    with use_plugin(Plugin(), "twins"):
        state = plugins.get_plugins()
        assert isinstance(state.methods.get("twin"), Twin)
        assert state.methods.owner["twin"] == "twins"
        assert state.origins["twins"] == "test plugin"
        assert state.hooks_of("twins") == ["register_methods"]
        assert {"standard", "mwt", "nemo"} <= set(state.methods)  # built-ins still there
    assert "twin" not in plugins.get_plugins().methods  # gone after the block


def tiny_model(num_classes: int, width: float = 0.0625):
    return simcnn(num_classes, width=width)


def test_hook_register_models():
    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("tinynet", "cnn", tiny_model, "a very small SimCNN", aliases=("tn",)))

    with use_plugin(Plugin(), "zoo-extra"):
        state = plugins.get_plugins()
        spec = state.models.get("tn")
        assert spec.name == "tinynet" and state.models.owner["tinynet"] == "zoo-extra"
        assert spec.build(3)(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
        grid = canonical_grid(make_tiny_grid(Path("runs"), models="tn:width=0.125"), state)
        assert grid.models == (Ref("tinynet", (("width", 0.125),)),)
        with pytest.raises(UsageError, match="model 'tinynet' takes no argument 'depth' \\(it takes: width\\)"):
            canonical_grid(make_tiny_grid(Path("runs"), models="tinynet:depth=2"), state)
        listed = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["list", "models", "tiny*"])
        assert listed.exit_code == 0, listed.output
        assert "tinynet (tn)" in listed.output and "zoo-extra" in listed.output
        assert "vgg16" not in listed.output


def test_a_model_of_an_unknown_family_is_refused():
    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("rnn", "recurrent", tiny_model, "not an image model"))

    expected = "plugin 'odd': model 'rnn' has family 'recurrent'; expected one of cnn, vit"
    with pytest.raises(PluginError, match=expected), use_plugin(Plugin(), "odd"):
        pass


def load_mini(root=None, download=False, val_fraction=0.1, **options) -> DataBundle:
    """Three classes of constant images (class c is grey level 60 * (c + 1))."""
    y = torch.arange(60) % 3
    x = (60 * (y + 1)).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).contiguous()
    data = TensorData(x, y)
    rest, val = stratified_split(data, val_fraction)
    return DataBundle("mini", 3, ["a", "b", "c"], rest, val, data, (0.5,) * 3, (0.25,) * 3, "none")


def test_hook_register_datasets():
    from bench.pipeline.progress import Bars
    from bench.pipeline.workspace import Workspace

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(DatasetSpec("mini", 3, "three grey levels", load_mini, aliases=("tiny3",)))

    with use_plugin(Plugin(), "data-extra"):
        state = plugins.get_plugins()
        assert state.datasets.canonical("tiny3") == "mini"
        assert state.datasets.owner["mini"] == "data-extra"
        grid = canonical_grid(make_tiny_grid(Path("runs"), datasets="tiny3"), state)
        assert grid.datasets == (Ref("mini"),)
        with Bars(quiet=True) as bars:
            workspace = Workspace(grid, state, torch.device("cpu"), bars)
            task = workspace.data(Ref("mini"), 0.1).task((2, 0))
        assert task.num_classes == 2 and task.class_names == ["c", "a"]
        assert sorted(set(task.test.y.tolist())) == [0, 1]
        with pytest.raises(UsageError, match="class id 5 is out of range for mini"):
            workspace.data(Ref("mini"), 0.1).task((0, 5))


def test_hook_register_commands(monkeypatch):
    @click.command()
    @click.option("--name", default="world")
    def hello(name):
        """Say hello (a plugin command)."""
        click.echo(f"hello {name}")

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command(hello)

    try:
        with use_plugin(Plugin(), "greeter"):
            result = CliRunner().invoke(cli, ["hello", "--name", "modbench"])
            assert result.exit_code == 0, result.output
            assert result.output == "hello modbench\n"
            assert "hello" in CliRunner().invoke(cli, ["--help"]).output
            assert plugins.get_plugins().hooks_of("greeter") == ["register_commands"]
    finally:
        cli.commands.pop("hello", None)


class Observer:
    """Collects every run event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict, dict]] = []

    @hookimpl
    def on_run_event(self, event, run, payload):
        self.events.append((event, dict(run), dict(payload)))


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> tuple[Observer, list[dict], Path]:
    """A tiny standard run watched by an observer plugin."""
    observer = Observer()
    out = tmp_path_factory.mktemp("observed") / "runs"
    with use_plugin(observer, "observer"):
        records = run_grid(make_tiny_grid(out, tasks=((0, 1), (2, 3))))
    return observer, records, out


def test_hook_on_run_event(observed):
    observer, records, out = observed
    kinds = [(event, payload.get("stage")) for event, _, payload in observer.events]
    assert kinds == [("epoch_end", "train"), ("stage_end", "train"), ("stage_end", "modularize"),
                     ("stage_end", "reuse"), ("stage_end", "reuse"), ("run_end", None)]
    for _, run, _ in observer.events:
        run = dict(run)
        directory = run.pop("directory")
        settings = run.pop("settings")
        assert run == {"method": "standard", "model": "simcnn:width=0.125", "dataset": str(Ref(
            "synthetic", (("classes", 4), ("size", 256), ("test_size", 64)))), "seed": 0, "out": str(out)}
        assert settings["epochs"] == "1" and settings["batch_size"] == "32"  # the cell's --set values
        assert records[0]["run_id"].startswith(str(Path(directory).relative_to(out)))
    _, _, epoch = observer.events[0]
    assert epoch["epoch"] == 1 and "loss" in epoch and "val_acc" in epoch
    assert observer.events[2][2]["threshold"] == 0.9
    assert [e[2]["classes"] for e in observer.events[3:5]] == [[0, 1], [2, 3]]
    assert observer.events[-1][2] == records[0]  # run_end carries the whole record


def test_run_event_names_the_cell_directory(observed):
    observer, _, _ = observed
    assert all("directory" in run for _, run, _ in observer.events)


def test_a_failing_observer_does_not_destroy_results(observed, tmp_path):
    _, _, out = observed
    runs = tmp_path / "runs"
    shutil.copytree(out, runs)

    class Broken:
        @hookimpl
        def on_run_event(self, event, run, payload):
            if event == "run_end":
                raise RuntimeError("logger is down")

    with use_plugin(Broken(), "broken-logger"):
        records = run_grid(make_tiny_grid(runs, tasks=((0, 1), (2, 3))))
    assert records[0]["error"] is None and len(records[0]["tasks"]) == 2


def test_every_hook_has_a_test():
    """Like datasette's: a new hook in bench.hookspecs needs a ``test_hook_<name>`` here."""
    known = ["on_run_event", "register_commands", "register_datasets", "register_methods", "register_models"]
    assert known == HOOKS
    missing = [hook for hook in HOOKS if not callable(globals().get(f"test_hook_{hook}"))]
    assert not missing, f"hooks without a test_hook_<name> in {__file__}: {missing}"


# ----------------------------------------------------------------------------- bench.testing, the pytest plugin


def test_fixtures_for_plugin_authors(tiny_grid, registered_method, dummy_method, observed, tmp_path):
    shutil.copytree(observed[2], tmp_path / "runs")  # the standard model is trained already
    grid = tiny_grid(methods="dummy", sets=["lr=0.04"])
    assert grid.out == tmp_path / "runs" and grid.device == "cpu" and grid.quiet and grid.preset == "smoke"
    with registered_method(dummy_method):
        assert plugins.get_plugins().methods.owner["dummy"] == "test-dummy"
        standard, dummy = run_grid(grid)
    assert "dummy" not in plugins.get_plugins().methods
    assert standard["error"] is None and dummy["error"] is None
    assert dummy["recipe"]["lr"] == 0.04 and dummy["recipe"]["epochs"] == 1
    assert dummy["modularization"]["retention"] == 0.5  # 260 of 520 kernels: the first half of each layer
    assert dummy["modularization"]["coupling"] == 1.0  # every class has the same module
    (task,) = dummy["tasks"]
    assert task["retention"] == 0.5 and task["retention_sum"] == 1.0 and task["weight_retention"] < 0.5


def test_bench_testing_is_a_pytest_plugin(pytester, monkeypatch):
    """What the pytest11 entry point gives a plugin's own test suite."""
    pytester.makepyfile("""
        from bench.plugins.manager import get_plugins


        def test_fixtures(tiny_grid, registered_method, dummy_method):
            grid = tiny_grid(methods="dummy,mwt", models="vit_s:depth=2,width=0.125", sets=["mwt.alpha=1"])
            assert grid.methods == ("dummy", "mwt") and str(grid.models[0]) == "vit_s:depth=2,width=0.125"
            assert grid.overrides.for_method("mwt") == {"alpha": 1}
            assert dict(grid.overrides.recipe)["epochs"] == 1
            with registered_method(dummy_method, plugin_name="mine"):
                assert get_plugins().methods.get("dummy") is dummy_method
                assert get_plugins().origins["mine"] == "test plugin"
            assert "dummy" not in get_plugins().methods
    """)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the same whether installed or not
    result = pytester.runpytest("-p", "bench.testing")
    result.assert_outcomes(passed=1)
    with open(REPO / "pyproject.toml", "rb") as fh:
        entry_points = tomllib.load(fh)["project"]["entry-points"]
    assert entry_points["pytest11"] == {"modbench": "bench.testing"}


# ----------------------------------------------------------------------------- failures, by plugin name


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_duplicate_method_names_across_plugins():
    first, second = use_plugin(MethodPlugin(Twin()), "first-plugin"), use_plugin(MethodPlugin(Twin()), "second-plugin")
    with first, pytest.raises(PluginError) as err, second:
        pass
    assert one_line(err) == "method 'twin' is registered twice: by plugin 'first-plugin' and by plugin 'second-plugin'"


def test_a_plugin_reusing_a_builtin_name():
    class Standard(DummyMethod):
        name = "standard"

    with pytest.raises(PluginError) as err, use_plugin(MethodPlugin(Standard()), "impostor"):
        pass
    assert "plugin 'methods.standard'" in one_line(err) and "plugin 'impostor'" in str(err.value)


def test_a_hook_that_raises_names_the_plugin():
    class Plugin:
        @hookimpl
        def register_methods(self, register):
            raise ValueError("no GPU found")

    with pytest.raises(PluginError) as err, use_plugin(Plugin(), "fragile"):
        pass
    assert one_line(err) == "plugin 'fragile' failed in register_methods: ValueError: no GPU found"


def test_a_method_lacking_a_stage():
    with pytest.raises(PluginError) as err, use_plugin(MethodPlugin(NoCompose()), "half-done"):
        pass
    assert one_line(err) == "plugin 'half-done': method 'nocompose' lacks stage compose"


def test_a_method_without_a_name():
    class Nameless(DummyMethod):
        name = ""

    expected = "plugin 'anon' registered a method without a name"
    with pytest.raises(PluginError, match=expected), use_plugin(MethodPlugin(Nameless()), "anon"):
        pass


def test_a_misspelled_hook_is_caught():
    class Plugin:
        @hookimpl
        def register_method(self, register):  # no such hook: register_methods
            register(Twin())

    with pytest.raises(PluginError) as err, use_plugin(Plugin(), "typo"):
        pass
    message = one_line(err)
    assert message.startswith("plugin 'typo' implements an unknown hook")
    assert "register_method" in message


def test_a_hook_with_wrong_arguments_is_invalid():
    class Plugin:
        @hookimpl
        def register_methods(self, add):
            add(Twin())

    with pytest.raises(PluginError, match="plugin 'wrong-args' is invalid"), use_plugin(Plugin(), "wrong-args"):
        pass


def test_a_failing_register_commands_is_one_line(monkeypatch, capsys):
    from bench.cli import main

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("click version mismatch")

    monkeypatch.setattr(sys, "argv", ["bench", "frobnicate"])
    with use_plugin(Plugin(), "cmd-plugin"), pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "plugin 'cmd-plugin'" in capsys.readouterr().err


def test_trace_shows_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("MODBENCH_TRACE_PLUGINS", "1")
    with use_plugin(Observer(), "observer"):
        plugins.get_plugins().emit("run_end", {"method": "x"}, {})
    assert "on_run_event" in capsys.readouterr().err


def test_trace_shows_registration_hooks(monkeypatch, capsys):
    monkeypatch.setenv("MODBENCH_TRACE_PLUGINS", "1")
    plugins.get_plugins()
    err = capsys.readouterr().err
    assert "register_methods" in err and "register_models" in err


# ----------------------------------------------------------------------------- where plugins come from

LOOSE_PLUGIN = '''
from bench.hookspecs import hookimpl
from bench.testing import DummyMethod


class Idea(DummyMethod):
    name = "idea"
    description = "a researcher's idea, not packaged"


@hookimpl
def register_methods(register):
    register(Idea())
'''


def test_plugins_dir_loads_loose_files(tmp_path):
    (tmp_path / "idea.py").write_text(LOOSE_PLUGIN)
    (tmp_path / "notes.txt").write_text("not a plugin")
    state = plugins.get_plugins(tmp_path)
    assert state.methods.get("idea").description == "a researcher's idea, not packaged"
    assert state.methods.owner["idea"] == "idea"
    assert state.origins["idea"] == f"file {tmp_path / 'idea.py'}"
    assert plugins.get_plugins(tmp_path) is state  # loading the same directory again changes nothing
    assert plugins.get_plugins() is state
    grid = canonical_grid(make_tiny_grid(tmp_path / "runs", methods="standard,idea", plugins_dir=tmp_path), state)
    assert grid.methods == ("standard", "idea")


def test_plugins_dir_errors(tmp_path):
    with pytest.raises(PluginError, match="plugins directory not found"):
        plugins.get_plugins(tmp_path / "missing")
    plugins.reset_plugins()
    (tmp_path / "bad.py").write_text("import nonexistent_module_xyz\n")
    with pytest.raises(PluginError) as err:
        plugins.get_plugins(tmp_path)
    assert one_line(err) == ("plugin 'bad' failed to load: ModuleNotFoundError: "
                             "No module named 'nonexistent_module_xyz'")


@pytest.fixture
def fake_entry_points(tmp_path, monkeypatch):
    """Two importable plugin modules exposed as installed 'modbench' entry points, plus a broken one."""
    for name in ("alpha", "beta"):
        (tmp_path / f"plug_{name}.py").write_text(LOOSE_PLUGIN.replace("Idea", name.title()).replace(
            '"idea"', f'"{name}"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_points = [importlib.metadata.EntryPoint(name, value, plugins.ENTRY_POINT_GROUP) for name, value in
                    [("alpha", "plug_alpha"), ("beta", "plug_beta"), ("gamma", "plug_gamma_missing")]]

    def fake(group=None):
        assert group == plugins.ENTRY_POINT_GROUP
        return entry_points

    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", fake)


@pytest.mark.parametrize("setting, loaded", [("", []), ("alpha", ["alpha"]), (" beta , alpha ", ["alpha", "beta"]),
                                             ("alpha,nosuch", ["alpha"])])
def test_load_plugins_env_filters_installed_plugins(fake_entry_points, monkeypatch, setting, loaded):
    monkeypatch.setenv("MODBENCH_LOAD_PLUGINS", setting)
    state = plugins.get_plugins()
    assert sorted(n for n in state.origins if state.origins[n] != "built-in") == loaded
    assert sorted(n for n in state.methods if state.methods.owner[n] not in plugins.DEFAULT_PLUGINS) == loaded
    assert all(state.origins[n] == "entry point of unknown distribution" for n in loaded)


def test_without_the_env_every_installed_plugin_loads(fake_entry_points, monkeypatch):
    monkeypatch.delenv("MODBENCH_LOAD_PLUGINS")
    with pytest.raises(PluginError) as err:  # gamma's module does not exist
        plugins.get_plugins()
    assert one_line(err).startswith("plugin 'gamma' failed to load: ModuleNotFoundError")
    plugins.reset_plugins()
    monkeypatch.setenv("MODBENCH_LOAD_PLUGINS", "alpha,beta")
    assert {"alpha", "beta"} <= set(plugins.get_plugins().methods)


# ----------------------------------------------------------------------------- a real installed plugin

def readme_block(language: str) -> str:
    """The first ``language`` code block of README.md's plugin section (what a plugin author copies)."""
    section = README.read_text(encoding="utf-8").split("## Writing a method plugin", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def readme_plugin_project(name: str) -> str:
    """A pyproject for the README's plugin file: the README's own entry-point table, plus what pip needs."""
    return (f'[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "0.3.0"\n\n{readme_block("toml")}\n'
            f'[tool.setuptools]\npy-modules = ["{name}"]\n')


def bench_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``bench ARGS`` in a subprocess (the console script when installed)."""
    script = shutil.which("bench")
    command = [script] if script else [sys.executable, "-c", "from bench.cli import main; main()"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)


@pytest.mark.heavy
def test_an_installed_third_party_plugin(tmp_path):
    """README.md's plugin example, as a researcher copies it into a package and pip-installs it."""
    source, site = tmp_path / "dist-src", tmp_path / "site"
    source.mkdir()
    (source / "pyproject.toml").write_text(readme_plugin_project("myplug"))
    (source / "myplug.py").write_text(readme_block("python"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True, timeout=300)
    assert (site / "myplug.py").is_file()
    env = {k: v for k, v in os.environ.items() if k != "MODBENCH_LOAD_PLUGINS"}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]), COLUMNS="250")

    listed = bench_command("list", "methods", env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "l1masks" in line)
    assert "myplug" in line and "L1 sparsity penalty" in line

    shown = bench_command("plugins", env=env)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.strip("│ ").startswith("myplug"))
    assert "entry point of myplug 0.3.0" in line and "register_methods" in line

    out = tmp_path / "runs"
    tiny = [arg for setting in TINY_SETTINGS for arg in ("--set", setting)]
    ran = bench_command("run", "--methods", "l1masks", "--models", TINY_MODEL, "--datasets", TINY_DATASET,
                        "--tasks", "0,1", "--device", "cpu", "--quiet", "--out", str(out), *tiny, env=env)
    assert ran.returncode == 0, ran.stderr
    records = sorted(out.rglob("record.json"))
    assert [p.relative_to(out).parts[2] for p in records] == ["l1masks", "standard"]
    assert "l1masks" in ran.stdout  # the comparison table

    hidden = bench_command("list", "methods", env={**env, "MODBENCH_LOAD_PLUGINS": ""})
    assert hidden.returncode == 0 and "l1masks" not in hidden.stdout and "mwt" in hidden.stdout
    print(f"installed-plugin test: {time.perf_counter() - start:.1f} s")


def test_the_pytest_plugin_does_not_import_torch():
    """``bench.testing`` loads in every pytest session of a project installed beside modbench."""
    code = ("import sys, bench.testing; print('torch' in sys.modules); bench.testing.DummyMethod; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]  # torch arrives with DummyMethod, on first use
