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
import torch
from torch import nn

from bench.grid.config import GridConfig, parse_overrides
from bench.hookspecs import hookimpl
from bench.modular.extract import extract
from bench.modular.masking import maskable_units
from bench.protocol.method import Method, StageContext, TrainContext, TrainedModel
from bench.protocol.modules import ModuleSet, unit_kind
from bench.refs import Ref, parse_refs

TINY_DATASET = "synthetic:size=256,classes=4,test_size=64"
TINY_MODEL = "simcnn:width=0.125"
TINY_SETTINGS = ("epochs=1", "finetune_epochs=1", "latency_batch=2", "activity_samples=16",
                 "batch_size=32", "eval_batch_size=64")

__all__ = ["TINY_DATASET", "TINY_MODEL", "TINY_SETTINGS", "DummyMethod", "MethodPlugin", "make_tiny_grid",
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

    def __init__(self, *methods: Method) -> None:
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
    def register(method: Method, plugin_name: str | None = None) -> Iterator[Method]:
        with use_plugin(MethodPlugin(method), plugin_name or f"test-{method.name}"):
            yield method

    return register


class DummyMethod(Method):
    """The smallest complete method: plain training; every class's module keeps the first half
    (rounded up) of every maskable unit's outputs, and a reused module is that half, extracted."""

    name = "dummy"
    description = "test method: plain training, modules keep a fixed half of every layer"

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Train the zoo model with the task loss."""
        return TrainedModel(ctx.model, ctx.fit(ctx.model, ctx.task_loss))

    def modularize(self, ctx: StageContext, trained: TrainedModel) -> ModuleSet:
        """The same half of every layer for every class."""
        named = maskable_units(trained.model)
        sizes = [unit.num_units for _, unit in named]
        row = torch.cat([torch.arange(size) < (size + 1) // 2 for size in sizes])  # (units,) bool
        return ModuleSet(unit_kind(ctx.family), [name for name, _ in named], sizes,
                         row.expand(ctx.num_classes, -1).clone())

    def compose(self, ctx: StageContext, trained: TrainedModel, modules: ModuleSet,
                classes: Sequence[int]) -> nn.Module:
        """The retained half, physically extracted."""
        return extract(trained.model, modules.target(classes))


@pytest.fixture
def dummy_method() -> DummyMethod:
    """A fresh ``DummyMethod`` (name 'dummy')."""
    return DummyMethod()
