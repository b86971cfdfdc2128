"""The run directory: where each stage's results live, written atomically and read back safely.

Every stage goes through one helper, ``cached(path, key, compute, restore)``: take the directory's
lock, read the stage's JSON, check its key and its tensor file's checksum, restore the result, or
compute it and write both files atomically. A stage is complete only when both verify; anything
else (missing, truncated, corrupt, stale) is recomputed, never silently used. The layout of a run
directory is in ``bench.pipeline.layout``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from filelock import FileLock

from bench.errors import CorruptArtifact, StageMissing

T = TypeVar("T")

log = logging.getLogger("bench")


def key_of(payload: Any) -> str:
    """A short stable hash of a JSON-serialisable description of a stage's inputs."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (a reader sees the old file or the new one, never half)."""
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n").encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def read_json(path: Path) -> Any | None:
    """The JSON value at ``path``, or None when it is missing or unreadable (logged)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return None


def save_tensors(path: Path, obj: Any) -> str:
    """``torch.save`` ``obj`` atomically; returns the file's sha256 for the stage's JSON."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def verified_bytes(path: Path, sha256: str | None) -> bytes:
    """The bytes of ``path`` after checking their sha256; CorruptArtifact when missing or altered."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptArtifact(f"{path} is missing") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptArtifact(f"{path} does not match its recorded checksum")
    return data


def load_tensors(path: Path, sha256: str | None, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by ``save_tensors`` with ``weights_only=True`` after checking its sha256.

    Raises CorruptArtifact when the file is missing, altered or unreadable.
    """
    data = verified_bytes(path, sha256)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception:  # torch raises several types for a damaged or unsafe file; its message advises
        # weights_only=False, which would run the code a file may hold: never relayed
        raise CorruptArtifact(f"{path} is not a safe tensor file (it holds more than tensors, or is damaged)") from None


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (processes computing the same stage wait for each other).

    ``filelock`` works on Linux, macOS and Windows; the lock file is ``.lock`` in the directory. Every
    write into the directory holds its lock, so the temporary files found there then are a killed
    writer's half files (``atomic_write``), and go.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(directory / ".lock"):
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        yield


@dataclass
class Stored:
    """What a stage keeps on disk: plain values (JSON) and, optionally, tensors (a checksummed file).

    ``sha256`` is the tensor file's checksum, set by ``cached`` once the file is written or verified.
    """

    info: dict[str, Any]
    tensors: Any = None
    sha256: str | None = None


def cached(path: Path, key: str, compute: Callable[[], Stored], restore: Callable[[Stored], T], *,
           map_location: str | torch.device = "cpu", read_only: bool = False, rebuild: str = "bench run",
           inputs: dict[str, Any] | None = None) -> T:
    """A stage's result: ``restore(stored)`` of what ``path`` holds when its key and checksum verify,
    else of what ``compute()`` returns, after it has been written atomically.

    ``path`` is the stage's JSON file; its tensors live beside it with the suffix ``.pt``. Restoring
    after computing too means a run always uses what the store holds. ``restore`` may raise
    ``CorruptArtifact``, ``RuntimeError`` or ``KeyError`` when the files do not fit, which
    recomputes. With ``read_only`` nothing is computed or written: a missing or damaged stage
    raises ``StageMissing`` naming the file and the command (``rebuild``) that recomputes it.
    ``inputs`` (what ``key`` hashes) are stored beside the key, so that a stage computed from other
    inputs is recomputed with a reason naming the ones that changed.
    """
    if read_only:
        stored = _read_stored(path, key, map_location, inputs)
        if isinstance(stored, Unusable):
            raise StageMissing(f"{stored.reason}; `{rebuild}` recomputes it")
        try:
            return restore(stored)
        except (CorruptArtifact, RuntimeError, KeyError) as exc:
            raise StageMissing(f"{path} cannot be used ({exc}); `{rebuild}` recomputes it") from None
    with locked(path.parent):
        stored = _read_stored(path, key, map_location, inputs)
        if isinstance(stored, Unusable):
            log.log(stored.level, "%s; computing it again", stored.reason)
        else:
            try:
                return restore(stored)
            except (CorruptArtifact, RuntimeError, KeyError) as exc:
                log.warning("%s cannot be used (%s); computing it again", path, exc)
        stored = compute()
        _write_stored(path, key, stored, inputs)
        return restore(stored)


def put(path: Path, key: str, stored: Stored, inputs: dict[str, Any] | None = None) -> None:
    """Store a stage's result at ``path`` under ``key``, replacing what is there (``bench import``)."""
    with locked(path.parent):
        _write_stored(path, key, stored, inputs)


def _write_stored(path: Path, key: str, stored: Stored, inputs: dict[str, Any] | None = None) -> None:
    """The tensor file first, then the JSON that names its checksum: a kill in between leaves a stale JSON."""
    entry: dict[str, Any] = {"key": key, "sha256": None, "info": stored.info}
    if inputs is not None:
        entry["inputs"] = inputs
    if stored.tensors is not None:
        stored.sha256 = entry["sha256"] = save_tensors(path.with_suffix(".pt"), stored.tensors)
    write_json(path, entry)


@dataclass
class Unusable:
    """Why a stage's files cannot be used (the reason names the file), and how loudly a run says so."""

    reason: str
    level: int = logging.WARNING


def check_entry(path: Path) -> str | None:
    """Why the stage stored at ``path`` (its JSON and tensor file) cannot be used, whatever its key; None if it can.

    The tensor file is checked against its recorded checksum, not loaded (the bytes written are the bytes read).
    """
    stored = _read_stored(path, None, None)
    return stored.reason if isinstance(stored, Unusable) else None


def _read_stored(path: Path, key: str | None, map_location: str | torch.device | None,
                 inputs: dict[str, Any] | None = None) -> Stored | Unusable:
    """The stage stored at ``path`` when its key matches (any key: None) and its tensor file verifies, else why not
    (for another key: the ``inputs`` that changed, when the entry names its own).

    With ``map_location`` None the tensor file is only checked against its checksum (``tensors`` stays None).
    """
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return Unusable(f"{path} is missing", logging.DEBUG)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Unusable(f"{path} is unreadable ({exc})")
    if not isinstance(entry, dict) or not isinstance(entry.get("info"), dict):
        return Unusable(f"{path} is not a stage's entry")
    if key is not None and entry.get("key") != key:
        return Unusable(f"{path} was computed {changed_inputs(entry.get('inputs'), inputs)}", logging.INFO)
    if entry.get("sha256") is None:
        return Stored(entry["info"])
    try:
        if map_location is None:
            verified_bytes(path.with_suffix(".pt"), entry["sha256"])
            return Stored(entry["info"], None, entry["sha256"])
        tensors = load_tensors(path.with_suffix(".pt"), entry["sha256"], map_location)
    except CorruptArtifact as exc:
        return Unusable(str(exc))
    return Stored(entry["info"], tensors, entry["sha256"])


INPUTS = {"data": "the data's content", "model": "the trained model", "modules": "the module masks",
          "standard": "the standard model", "schema": "modbench's stage schema"}


def changed_inputs(old: Any, new: dict[str, Any] | None) -> str:
    """'from other inputs (the data's content, the trained model changed)': how a stored stage's inputs differ from
    ``new``; 'with other settings' when the stored entry does not name its inputs."""
    if not isinstance(old, dict) or new is None:
        return "with other settings"
    changed = [INPUTS.get(name, name) for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    return f"from other inputs ({', '.join(changed)} changed)" if changed else "from other inputs"


def stored_key(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The key and the inputs of the stage entry at ``path`` (None, None when there is none, or it is unreadable)."""
    entry = read_json(path)
    if not isinstance(entry, dict):
        return None, None
    inputs = entry.get("inputs")
    return entry.get("key"), inputs if isinstance(inputs, dict) else None


def classes_label(classes: tuple[int, ...] | list[int]) -> str:
    """'0-1-2' for classes (0, 1, 2)."""
    return "-".join(str(c) for c in classes)
