"""The plugin documentation keeps up with the API: README.md's "Writing a method plugin" section
must mention every hook of bench.hookspecs and every stage a Method provides, every ``bench.`` name the
README mentions must import (without a deprecation), and its method written from scratch must run."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest
from console import run_main

from bench import hookspecs
from bench.record import read_record
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Writing a method plugin"
HOOKS = sorted(name for name, f in vars(hookspecs).items() if hasattr(f, "modbench_spec"))
STAGES = ("train", "modularize", "compose", "build", "hparams")


def plugin_section() -> str:
    """The section's text, up to the next level-2 heading outside a code block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == SECTION]
    assert starts, f"README.md has no '{SECTION}' section"
    body, fenced = [], False
    for line in lines[starts[0] + 1:]:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert re.search(rf"\b{hook}\b", plugin_section()), f"hook {hook} is not in README.md's '{SECTION}'"


@pytest.mark.parametrize("stage", STAGES)
def test_every_method_stage_is_documented(stage):
    """A stage counts as documented when it appears as code: `train`, `Method.train`, or ``def train(``."""
    pattern = rf"`(?:\w+\.)?{stage}\b|\bdef {stage}\("
    assert re.search(pattern, plugin_section()), f"Method.{stage} is not in README.md's '{SECTION}'"


# ----------------------------------------------------------------------------- every name the README teaches imports

TAUGHT = re.compile(r"\bbench(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"^from (bench(?:\.\w+)*) import ([\w, ]+)$", re.MULTILINE)


def readme_names() -> list[str]:
    """Every ``bench.x.y`` the README names, and every name its code blocks import ``from bench...``."""
    text = README.read_text(encoding="utf-8")
    names = set(TAUGHT.findall(text))
    for module, imported in FROM_IMPORT.findall(text):
        names.update(f"{module}.{name.strip()}" for name in imported.split(",") if name.strip())
    return sorted(names)


def resolve(dotted: str) -> object:
    """The object ``dotted`` names, found as ``from a.b import c`` finds it: an attribute of the module, else
    a submodule."""
    parts = dotted.split(".")
    value = importlib.import_module(parts[0])
    for depth, part in enumerate(parts[1:], start=2):
        try:
            value = getattr(value, part)
        except AttributeError:
            value = importlib.import_module(".".join(parts[:depth]))
    return value


def test_the_readme_names_bench_names():
    """The search below finds what it should (so the import test cannot pass on an empty list)."""
    names = readme_names()
    assert {"bench.testing", "bench.Method", "bench.threshold_masks", "bench.extract", "bench.hookimpl"} <= set(names)


@pytest.mark.parametrize("name", readme_names())
def test_every_bench_name_the_readme_mentions_imports(name):
    """Issue 22, defect 11: a plugin written from the README loads; and no taught name is a deprecated one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert resolve(name) is not None


@pytest.mark.parametrize(("old", "now"), [("bench.method.Method", "bench.protocol.method"),
                                          ("bench.method.TrainedModel", "bench.protocol.method"),
                                          ("bench.modules.threshold_masks", "bench.modular.activity"),
                                          ("bench.modules.ModuleSet", "bench.protocol.modules"),
                                          ("bench.extract.extract", "bench.modular.extract")])
def test_the_first_release_paths_still_import_with_a_warning(old, now):
    """A plugin written against the first release loads, told the new spelling."""
    module, name = old.rsplit(".", 1)
    with pytest.warns(DeprecationWarning, match=re.escape(f"use `from bench import {name}`")):
        value = getattr(importlib.import_module(module), name)  # from bench.method import Method
    assert value is getattr(importlib.import_module(now), name)


def test_the_package_extract_stays_callable_after_the_old_module_is_imported():
    """``import bench.extract`` makes the package attribute the module: it still extracts."""
    import bench.extract  # noqa: F401
    from bench import extract

    assert callable(extract)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_readme_method_written_from_scratch_runs(tmp_path, capsys):
    """The README's ``frequent.py``, copied as it stands into a plugins folder, runs a tiny grid."""
    section = plugin_section()
    block = section.split("`frequent.py`", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "frequent.py").write_text(block)
    settings = [arg for setting in TINY_SETTINGS for arg in ("--set", setting)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        code = run_main(["run", "--methods", "frequent", "--models", TINY_MODEL, "--datasets", TINY_DATASET,
                         "--tasks", "0,1", "--device", "cpu", "--quiet", "--workers", "1",
                         "--plugins-dir", tmp_path / "plugins", "--out", tmp_path / "runs", *settings])
    assert code == 0, capsys.readouterr().err
    (path,) = (p for p in (tmp_path / "runs").rglob("record.json") if "frequent" in p.parts)
    record = read_record(path)
    assert record["error"] is None and record["modularization"]["retention"] < 1.0
    assert record["tasks"][0]["weight_retention"] < 1.0  # a physically smaller module
