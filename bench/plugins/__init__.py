"""The plugin layer: the plugin manager and the name registries its hooks fill."""

from bench.plugins.manager import DEFAULT_PLUGINS, Plugins, get_plugins, reset_plugins
from bench.plugins.registry import Registry

__all__ = ["DEFAULT_PLUGINS", "Plugins", "Registry", "get_plugins", "reset_plugins"]
