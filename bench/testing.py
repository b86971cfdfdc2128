"""Pytest fixtures for method authors: a tiny grid, a dummy method, and temporary registration.

modbench exposes this module as a pytest plugin (entry point ``pytest11``: ``modbench =
"bench.testing"``), so a plugin's own test suite gets the fixtures once modbench is installed::

    from bench.pipeline.runner import run_grid

    def test_my_method_runs(tiny_grid, registered_method):
        with registered_method(MyMethod()):
            records = run_grid(tiny_grid(methods="standard,mymethod"))
        assert all(r["error"] is None for r in records)

Fixtures:

- ``tiny_grid(**overrides)`` builds a ``GridConfig`` that trains in seconds on a CPU
  (4 synthetic classes, a width-0.125 SimCNN, one epoch) writing under ``tmp_path``.
- ``registered_method(method)`` is a context manager that registers a method as if a plugin
  had (same checks: duplicate names, missing stages) and forgets every plugin afterwards.
- ``dummy_method`` is a ``DummyMethod``: plain training, modules keeping a fixed half of
  every maskable unit. Subclass it to test one stage of your own at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.grid.config import GridConfig
from bench.grid.settings import parse_overrides
from bench.hookspecs import hookimpl
from bench.refs import Ref, parse_refs

TINY_DATASET = "synthetic:size=256,classes=4,test_size=64"
TINY_MODEL = "simcnn:width=0.125"
TINY_SETTINGS = ("epochs=1", "finetune_epochs=1", "latency_batch=2", "activity_samples=16",
                 "batch_size=32", "eval_batch_size=64")

__all__ = ["TINY_DATASET", "TINY_MODEL", "TINY_SETTINGS", "MethodPlugin", "make_tiny_grid",
           "use_plugin"]


def _refs(value: str | Sequence[str | Ref]) -> tuple[Ref, ...]:
    if isinstance(value, str):
        return tuple(parse_refs([value]))
    return tuple(v if isinstance(v, Ref) else parse_refs([v])[0] for v in value)


def make_tiny_grid(out: Path, sets: Sequence[str] = (), **overrides: Any) -> GridConfig:
    """A tiny, fast grid writing to ``out``; keywords replace ``GridConfig`` fields.

    ``methods`` may be a comma-separated string, ``models`` and ``datasets`` strings as typed on
    the command line (``"vit_s:depth=2,width=0.125"``); ``sets`` adds ``--set`` items after the
    tiny settings (a later value wins: ``sets=["epochs=2", "mwt.alpha=1.0"]``).
    """
    if isinstance(overrides.get("methods"), str):
        overrides["methods"] = tuple(m.strip() for m in overrides["methods"].split(",") if m.strip())
    for key in ("models", "datasets"):
        if key in overrides:
            overrides[key] = _refs(overrides[key])
    grid = GridConfig(
        methods=("standard",), models=_refs(TINY_MODEL), datasets=_refs(TINY_DATASET), tasks=((0, 1),),
        preset="smoke", overrides=parse_overrides([*TINY_SETTINGS, *sets]), out=out, device="cpu", quiet=True,
    )
    return replace(grid, **overrides)


@pytest.fixture
def tiny_grid(tmp_path: Path):
    """A factory of tiny grids writing to ``tmp_path / 'runs'`` (see ``make_tiny_grid``)."""

    def factory(sets: Sequence[str] = (), **overrides: Any) -> GridConfig:
        overrides.setdefault("out", tmp_path / "runs")
        return make_tiny_grid(sets=sets, **overrides)

    return factory


class MethodPlugin:
    """A plugin object whose ``register_methods`` hook registers the given methods."""

    def __init__(self, *methods: Any) -> None:
        self.methods = methods

    @hookimpl
    def register_methods(self, register: Any) -> None:
        """Register every method given to the constructor."""
        for method in self.methods:
            register(method)


@contextlib.contextmanager
def use_plugin(plugin: object, name: str) -> Iterator[object]:
    """Load ``plugin`` (an object or module with hook implementations) into the plugins, like a
    ``--plugins-dir`` file named ``name``: its registrations go through the usual checks and
    ``bench plugins`` lists it. On exit every plugin is forgotten (``reset_plugins``)."""
    from bench.plugins import manager as plugins

    try:
        state = plugins.get_plugins()
        plugins._register(state, name, lambda: plugin, "test plugin")
        plugins._finish(state, [plugin])
        yield plugin
    finally:
        plugins.reset_plugins()


@pytest.fixture
def registered_method():
    """``with registered_method(method):`` makes ``method`` a registered method for the block.

    The method's plugin is named ``test-<method name>`` unless ``plugin_name`` is given.
    """

    @contextlib.contextmanager
    def register(method: Any, plugin_name: str | None = None) -> Iterator[Any]:
        with use_plugin(MethodPlugin(method), plugin_name or f"test-{method.name}"):
            yield method

    return register


@pytest.fixture
def dummy_method() -> Any:
    """A fresh ``DummyMethod`` (name 'dummy')."""
    from bench.testing_dummy import DummyMethod

    return DummyMethod()


def __getattr__(name: str) -> Any:
    """``DummyMethod`` is imported on first use: as a pytest plugin this module loads in every test
    session of a project installed beside modbench, which should not pay for importing torch."""
    if name == "DummyMethod":
        from bench.testing_dummy import DummyMethod

        return DummyMethod
    raise AttributeError(f"module 'bench.testing' has no attribute {name!r}")
