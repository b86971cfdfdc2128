"""Run options declared once: precedence, config-file forms, sweeps as grid axes, help and README agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import UsageError
from bench.grid.config import grid_from_options, read_config_file
from bench.grid.expand import canonical_grid, expand
from bench.grid.options import CONFIG_KEYS, OPTIONS, RUN_OPTIONS, merge_options
from bench.grid.settings import parse_overrides
from bench.plugins.manager import get_plugins

README = Path(__file__).resolve().parent.parent / "README.md"


def grid_of(given: dict | None = None, config: dict | None = None):
    return grid_from_options(merge_options(given or {}, config or {}))


def test_defaults_come_from_the_declarations():
    grid = grid_of()
    assert grid.methods == tuple(OPTIONS["methods"].default)
    assert grid.tasks == ((0, 1), (2, 3, 4))
    assert [str(m) for m in grid.models] == list(OPTIONS["models"].default)
    assert grid.thresholds == (0.9,) and grid.seeds == (0,) and grid.preset == "smoke"


def test_the_command_line_wins_over_the_config_file_which_wins_over_defaults():
    grid = grid_of({"methods": ("mwt",), "seeds": None}, {"methods": ["nemo"], "seeds": [1, 2], "preset": "paper"})
    assert grid.methods == ("mwt",) and grid.seeds == (1, 2) and grid.preset == "paper"


@pytest.mark.parametrize("value, tasks", [
    ("0,1", ((0, 1),)),
    ([0, 1], ((0, 1),)),
    ([[0, 1], [2, 3, 4]], ((0, 1), (2, 3, 4))),
    (["0,1", "2,3"], ((0, 1), (2, 3))),
])
def test_tasks_in_a_config_file(value, tasks):
    assert grid_of(config={"tasks": value}).tasks == tasks


@pytest.mark.parametrize("config, message", [
    ({"tasks": [0]}, "has one class"),
    ({"tasks": [[0, 1], "x"]}, "bad task 'x'"),
    ({"tasks": [{"a": 1}]}, "cannot read task"),
    ({"quiet": "yes"}, "must be true or false"),
    ({"methods": {"a": 1}}, "must be a list or a comma-separated string"),
    ({"executor": "mpi"}, "--executor: 'mpi' is not one of 'local', 'ray', 'slurm'"),
])
def test_bad_config_values_are_one_line_errors(config, message):
    with pytest.raises(UsageError, match=message) as err:
        grid_of(config=config)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("given, message", [
    ({"methods": ("",)}, "--methods is empty"),
    ({"seeds": (" , ",)}, "--seeds is empty"),
    ({"thresholds": ("",)}, "--thresholds is empty"),
    ({"seeds": ("99999999999",)}, "seed 99999999999 is out of range"),
    ({"thresholds": ("0",)}, "thresholds must be in"),
    ({"models": (",",)}, "--models is empty"),
])
def test_empty_or_out_of_range_values_never_fall_back_to_defaults(given, message):
    with pytest.raises(UsageError, match=message):
        grid_of(given)


def test_set_in_a_config_file_must_be_a_table(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('set = "epochs=1"\n')
    with pytest.raises(UsageError, match="'set' must be a table"):
        grid_of(config=read_config_file(path))


def test_a_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_bytes(b'methods = ["\xff\xfe"]\n')
    with pytest.raises(UsageError, match=r"is not UTF-8|not valid TOML"):
        read_config_file(path)


def test_a_comma_list_is_a_sweep_and_axes_multiply():
    overrides = parse_overrides(["nemo.alpha=0.5,1.5", "nemo.tau=0.1,0.2", "epochs=3"])
    assert overrides.axes() == [("nemo.alpha", (0.5, 1.5)), ("nemo.tau", (0.1, 0.2))]
    variants = overrides.variants()
    assert len(variants) == 4
    assert {(v.for_method("nemo")["alpha"], v.for_method("nemo")["tau"]) for v in variants} == {
        (0.5, 0.1), (0.5, 0.2), (1.5, 0.1), (1.5, 0.2)}
    assert all(v.recipe == (("epochs", 3),) for v in variants)


def sweep_cells(grid):
    plugins = get_plugins()
    return expand(canonical_grid(grid, plugins), plugins)


def test_a_method_sweep_expands_into_cells_from_the_command_line():
    grid = grid_of({"methods": ("nemo",), "models": ("simcnn:width=0.25",), "set": ("nemo.alpha=0.5,1.5",)})
    cells = sweep_cells(grid)
    assert [(c.method, c.overrides.for_method("nemo").get("alpha")) for c in cells] == [
        ("standard", None), ("nemo", 0.5), ("nemo", 1.5)]  # one standard model serves both


def test_a_recipe_sweep_trains_a_standard_model_per_value(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('methods = ["mwt"]\nmodels = ["simcnn:width=0.25"]\n[set]\nepochs = [1, 2]\n'
                    '[set.mwt]\nalpha = [0.5, 1.0]\n')
    cells = sweep_cells(grid_of(config=read_config_file(path)))
    standard = [dict(c.overrides.recipe)["epochs"] for c in cells if c.method == "standard"]
    mwt = [(dict(c.overrides.recipe)["epochs"], c.overrides.for_method("mwt")["alpha"]) for c in cells
           if c.method == "mwt"]
    assert standard == [1, 2]
    assert sorted(mwt) == [(1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)]


def test_every_option_is_in_help_config_keys_and_readme():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0
    readme = README.read_text()
    table = dict(re.findall(r"^\| `(--[a-z-]+)[^`]*` \| `([a-z_]+)` \|", readme, re.M))
    for option in RUN_OPTIONS:
        assert option.flag in result.output, option.flag
        assert option.name in CONFIG_KEYS
        assert table.get(option.flag) == option.name, f"README's options table lacks {option.flag}"
    assert set(table) == {o.flag for o in RUN_OPTIONS}
