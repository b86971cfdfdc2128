"""The plugin manager: built-ins, installed entry points and loose files, loaded lazily once.

Built-in models, datasets and methods are registered exactly like third-party plugins (the
``DEFAULT_PLUGINS`` modules). Installed plugins come from the ``modbench`` entry-point group;
``MODBENCH_LOAD_PLUGINS=a,b`` limits which of them load (empty: none) and
``MODBENCH_TRACE_PLUGINS=1`` prints every hook call. Every failure names the plugin in one line.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from bench import hookspecs
from bench.errors import PluginError
from bench.plugins.registry import Registry
from bench.refs import Ref

DEFAULT_PLUGINS = (
    "bench.models.builtin",
    "bench.data.builtin",
    "methods.standard",
    "methods.mwt",
    "methods.nemo",
    "methods.cnnsplitter",
    "methods.moda",
    "methods.gradsplitter",
    "methods.seam",
    "bench.loggers.tensorboard",
)
ENTRY_POINT_GROUP = "modbench"
RELOADABLE = ("built-in", "entry point of ", "file ")  # origins a new worker process loads again by itself
log = logging.getLogger("bench")
FAMILIES = ("cnn", "vit")


@dataclass
class Plugins:
    """The loaded plugins and the registries their hooks filled."""

    pm: pluggy.PluginManager
    methods: Registry = field(default_factory=lambda: Registry("method", "bench list methods"))
    models: Registry = field(default_factory=lambda: Registry("model", "bench list models"))
    datasets: Registry = field(default_factory=lambda: Registry("dataset", "bench list datasets"))
    origins: dict[str, str] = field(default_factory=dict)

    def hooks_of(self, name: str) -> list[str]:
        """Names of the hooks plugin ``name`` implements."""
        plugin = self.pm.get_plugin(name)
        return sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])

    def call_each(self, hook: str, **kwargs: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
        """(plugin name, call) for every implementation of ``hook``, in registration order.

        Each call goes through pluggy (so ``MODBENCH_TRACE_PLUGINS`` shows it) and runs one plugin
        only, so that a failure can be blamed on the plugin that raised.
        """
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            others = [p for p in self.pm.get_plugins() if p is not impl.plugin]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            yield impl.plugin_name, lambda caller=caller: caller(**kwargs)

    def registered_here(self) -> list[str]:
        """Plugins this process registered from objects (``bench.testing.use_plugin``): a worker process
        started now would not have them."""
        return [name for name, origin in self.origins.items() if not origin.startswith(RELOADABLE)]

    def model_ref(self, name: str, args: dict[str, Any]) -> Ref:
        """The one name of a model: alias resolved, arguments checked, defaults left out."""
        spec = self.models.get(name)
        return Ref(spec.name, tuple(sorted(spec.canonical_args(args).items())))

    def teacher_ref(self, model: Ref) -> Ref | None:
        """The model a distilled ``model`` learns from (None when it has no teacher)."""
        teacher = self.models.get(model.name).teacher_ref(model.kwargs)
        return None if teacher is None else self.model_ref(*teacher)

    def emit(self, event: str, run: dict[str, Any], payload: dict[str, Any]) -> None:
        """Tell every observer plugin about a run event; a failing observer is logged, never fatal."""
        for name, call in self.call_each("on_run_event", event=event, run=run, payload=payload):
            try:
                call()
            except Exception as exc:
                log.warning("plugin '%s' failed in on_run_event(%s): %s: %s", name, event, type(exc).__name__, exc)


_loaded: Plugins | None = None
_loaded_dirs: set[Path] = set()


def get_plugins(plugins_dir: Path | None = None) -> Plugins:
    """The plugin state, loading plugins on first use (and ``plugins_dir`` files when new)."""
    global _loaded
    if _loaded is None:
        pm = pluggy.PluginManager("modbench")
        pm.add_hookspecs(hookspecs)
        if os.environ.get("MODBENCH_TRACE_PLUGINS"):
            pm.trace.root.setwriter(lambda text: print(text, end="", file=sys.stderr))
            pm.enable_tracing()
        state = Plugins(pm)
        for module_name in DEFAULT_PLUGINS:
            _register(state, module_name, lambda m=module_name: importlib.import_module(m), "built-in")
        _load_entry_points(state)
        _finish(state, pm.get_plugins())
        _loaded = state
    if plugins_dir is not None and plugins_dir.resolve() not in _loaded_dirs:
        _load_directory(_loaded, plugins_dir)
        _loaded_dirs.add(plugins_dir.resolve())
    return _loaded


def reset_plugins() -> None:
    """Forget loaded plugins (tests; the next ``get_plugins`` loads afresh)."""
    global _loaded
    _loaded = None
    _loaded_dirs.clear()


def _register(state: Plugins, name: str, load: Callable[[], Any], origin: str) -> Any:
    try:
        plugin = load()
    except Exception as exc:
        raise PluginError(f"plugin '{name}' failed to load: {type(exc).__name__}: {exc}") from None
    try:
        state.pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{name}' is invalid: {exc}") from None
    except ValueError as exc:
        raise PluginError(f"plugin '{name}' could not be registered: {exc}") from None
    state.origins[name] = origin
    return plugin


def _load_entry_points(state: Plugins) -> None:
    wanted = os.environ.get("MODBENCH_LOAD_PLUGINS")
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
        _register(state, ep.name, ep.load, f"entry point of {dist}")


def _load_directory(state: Plugins, directory: Path) -> None:
    if not directory.is_dir():
        raise PluginError(f"plugins directory not found: {directory}")
    before = set(state.pm.get_plugins())
    for path in sorted(directory.glob("*.py")):
        _register(state, path.stem, lambda p=path: _import_file(p), f"file {path}")
    _finish(state, [p for p in state.pm.get_plugins() if p not in before])


def _import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"modbench_plugin_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finish(state: Plugins, plugins: list[Any]) -> None:
    try:
        state.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{state.pm.get_name(exc.plugin)}' implements an unknown hook: {exc}") from None
    names = {state.pm.get_name(p) for p in plugins}
    _collect(state, "register_models", names, lambda item, plugin: _add_model(state, item, plugin))
    _collect(state, "register_datasets", names, lambda item, plugin: _add_dataset(state, item, plugin))
    _collect(state, "register_methods", names, lambda item, plugin: _add_method(state, item, plugin))


def _collect(state: Plugins, hook: str, names: set[str], add: Callable[[Any, str], None]) -> None:
    current: list[str] = []
    for name, call in state.call_each(hook, register=lambda item: add(item, current[-1])):
        if name not in names:
            continue
        current.append(name)
        try:
            call()
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin '{name}' failed in {hook}: {type(exc).__name__}: {exc}") from None


def _add_model(state: Plugins, spec: Any, plugin: str) -> None:
    if getattr(spec, "family", None) not in FAMILIES:
        raise PluginError(f"plugin '{plugin}': model '{getattr(spec, 'name', spec)}' has family "
                          f"{getattr(spec, 'family', None)!r}; expected one of {', '.join(FAMILIES)}")
    state.models.add(spec.name, spec, plugin, tuple(spec.aliases))


def _add_dataset(state: Plugins, spec: Any, plugin: str) -> None:
    state.datasets.add(spec.name, spec, plugin, tuple(getattr(spec, "aliases", ())))


def _add_method(state: Plugins, method: Any, plugin: str) -> None:
    from bench.protocol.method import missing_stages

    name = getattr(method, "name", "")
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin '{plugin}' registered a method without a name")
    missing = missing_stages(method)
    if missing:
        raise PluginError(f"plugin '{plugin}': method '{name}' lacks stage {', '.join(missing)}")
    state.methods.add(name, method, plugin)
