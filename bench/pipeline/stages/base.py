"""What every stage shares: the workspace, and the store's one cached-step helper bound to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.grid.resolve import Resolved
from bench.pipeline import store
from bench.pipeline.workspace import Workspace

T = TypeVar("T")
STAGE_SCHEMA = 2  # bump to invalidate every cached stage after a change of what a stage computes


class Stage:
    """Base of the stages: ``cached`` reads, verifies, computes and writes through ``bench.pipeline.store``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def cached(self, path: Path, parts: dict[str, Any], compute: Callable[[], store.Stored],
               restore: Callable[[store.Stored], T]) -> T:
        """The stage result at ``path``: restored when its key (``key_of(**parts)``) and checksum verify, else
        computed.

        ``compute()`` returns what to store; ``restore(stored)`` builds the result from it, both
        after computing and after reading, so what a run uses is always what the store holds. The
        parts are stored beside the key: a stage recomputed for other inputs says which changed.
        """
        return store.cached(path, key_of(**parts), compute, restore, map_location=self.ws.device,
                            read_only=self.ws.read_only, inputs=stage_inputs(**parts))

    def data_part(self, r: Resolved) -> dict[str, str]:
        """``{"data": content key}`` when ``r``'s data set is read from files a user can change; empty when its
        name and options determine it (every stage's key holds it: results follow the data they came from)."""
        content = self.ws.data_key(r)
        return {} if content is None else {"data": content}


def stage_inputs(**parts: Any) -> dict[str, Any]:
    """What a stage key hashes: ``parts`` and the stage schema."""
    return {"schema": STAGE_SCHEMA, **parts}


def key_of(**parts: Any) -> str:
    """A stage key: a hash of ``parts`` and the stage schema."""
    return store.key_of(stage_inputs(**parts))
