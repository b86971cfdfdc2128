"""The content keys of a run's data sets: computed once per process, remembered in the runs folder.

A data set whose ``DatasetSpec`` has a ``content_key`` is keyed by what it holds (``bench.data.content``):
the files it is read from are fingerprinted (names, sizes, times) and their checksum is computed only
when the fingerprint is not the one remembered beside it in ``<runs>/.data-keys/``. When the checksum
differs from the one remembered there, one warning says that the data changed: every stage computed
from the earlier data has another key, and is computed again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.data.content import checksum, fingerprint
from bench.errors import DataNotFound
from bench.pipeline import store
from bench.refs import Ref

log = logging.getLogger("bench")
FOLDER = ".data-keys"


class DataKeys:
    """Content keys per data set reference, once per process; ``read_only`` remembers nothing on disk."""

    def __init__(self, out: Path, read_only: bool = False) -> None:
        self.folder = out / FOLDER
        self.read_only = read_only
        self._known: dict[Ref, str] = {}

    def key(self, ref: Ref, said: str | Sequence[Path], load: Callable[[], object]) -> str:
        """The content key of ``ref``, whose ``content_key`` said ``said`` (its key, or the files it is read
        from); ``load()`` loads the data set (downloading it when asked) when a file is not there yet."""
        if ref not in self._known:
            self._known[ref] = self._compute(ref, said, load)
        return self._known[ref]

    def _compute(self, ref: Ref, said: str | Sequence[Path], load: Callable[[], object]) -> str:
        path = self.folder / f"{hashlib.sha256(str(ref).encode()).hexdigest()[:16]}.json"
        remembered = store.read_json(path)
        remembered = remembered if isinstance(remembered, dict) else {}
        if isinstance(said, str):
            content, prints = said, None
        else:
            roots = [Path(p).expanduser() for p in said]
            if not all(root.exists() for root in roots):
                load()  # downloads, or says which files are missing
            missing = [str(root) for root in roots if not root.exists()]
            if missing:
                raise DataNotFound(f"{ref}: {', '.join(missing)} not found")
            prints = fingerprint(roots)
            same = remembered.get("fingerprint") == prints and isinstance(remembered.get("content"), str)
            content = remembered["content"] if same else checksum(roots)
        if remembered.get("content") not in (None, content):
            log.warning("the data of %s changed since this runs folder last used it: what was computed from the "
                        "earlier data is computed again", ref)
        if not self.read_only and (remembered.get("content"), remembered.get("fingerprint")) != (content, prints):
            store.write_json(path, {"dataset": str(ref), "content": content, "fingerprint": prints})
        return content
