"""The modbench plugin API: every hook a plugin may implement.

A plugin is a module (or object) with functions decorated by ``bench.hookimpl``; it is found
through the ``modbench`` entry-point group, a ``--plugins-dir`` file, or the built-in list in
``bench.plugins.DEFAULT_PLUGINS``. Registration hooks receive a ``register`` callback so that the
host keeps control of names, aliases and duplicates.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("modbench")
hookimpl = pluggy.HookimplMarker("modbench")


@hookspec
def register_methods(register: Any) -> None:
    """Call ``register(method)`` once per ``bench.method.Method`` instance the plugin provides."""


@hookspec
def register_models(register: Any) -> None:
    """Call ``register(spec)`` once per ``bench.models.ModelSpec`` (name, family, builder)."""


@hookspec
def register_datasets(register: Any) -> None:
    """Call ``register(spec)`` once per ``bench.data.DatasetSpec`` (name, classes, loader)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``bench`` group (``cli.add_command`` or ``@cli.command()``)."""


@hookspec
def on_run_event(event: str, run: dict[str, Any], payload: dict[str, Any]) -> None:
    """Observe a run: ``event`` is 'epoch_end', 'stage_end' or 'run_end'; return value ignored.

    ``run`` identifies the grid cell (method, model, dataset, seed, directory); ``payload`` holds
    the stage name and its metrics (for 'run_end': the whole record).
    """
