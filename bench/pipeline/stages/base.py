"""What every stage shares: the workspace, and the store's one cached-step helper bound to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.pipeline import store
from bench.pipeline.workspace import Workspace

T = TypeVar("T")
STAGE_SCHEMA = 2  # bump to invalidate every cached stage after a change of what a stage computes


class Stage:
    """Base of the stages: ``cached`` reads, verifies, computes and writes through ``bench.pipeline.store``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def cached(self, path: Path, key: str, compute: Callable[[], store.Stored],
               restore: Callable[[store.Stored], T]) -> T:
        """The stage result at ``path``: restored when its key and checksum verify, else computed.

        ``compute()`` returns what to store; ``restore(stored)`` builds the result from it, both
        after computing and after reading, so what a run uses is always what the store holds.
        """
        return store.cached(path, key, compute, restore, map_location=self.ws.device, read_only=self.ws.read_only)


def key_of(**parts: Any) -> str:
    """A stage key: a hash of ``parts`` and the stage schema."""
    return store.key_of({"schema": STAGE_SCHEMA, **parts})
