"""Name -> item registries with aliases, wildcards and "did you mean" errors."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from typing import Generic, TypeVar

from bench.errors import PluginError, UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of one kind (methods, models, datasets), each known by a name and its aliases.

    ``owner`` remembers which plugin registered a name, so duplicates are reported by plugin.
    """

    def __init__(self, kind: str, list_hint: str) -> None:
        self.kind = kind
        self.list_hint = list_hint
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self.owner: dict[str, str] = {}

    def add(self, name: str, item: T, plugin: str, aliases: tuple[str, ...] = ()) -> None:
        """Register ``item`` under ``name`` (and ``aliases``); a name taken twice is a PluginError."""
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                first = self.owner[self._aliases.get(key, key)]
                raise PluginError(
                    f"{self.kind} '{key}' is registered twice: by plugin '{first}' and by plugin '{plugin}'"
                )
        self._items[name] = item
        self.owner[name] = plugin
        for alias in aliases:
            self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases; UsageError with a suggestion otherwise."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = [*self._items, *self._aliases]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown {self.kind} '{name}'{hint} ({self.list_hint})")

    def get(self, name: str) -> T:
        """The item registered as ``name`` (aliases accepted)."""
        return self._items[self.canonical(name)]

    def aliases_of(self, name: str) -> list[str]:
        """Aliases that point at ``name``."""
        return sorted(a for a, target in self._aliases.items() if target == name)

    def match(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell wildcard, in registration order."""
        return [n for n in self._items if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
