"""The run directory: where each stage's results live, written atomically and read back safely.

Layout (one directory per trained model, keyed by a hash of everything that determines it)::

    runs/<dataset>/<model>/<method>/<train-key>/
        model.pt  train.json                     # train stage (train.json carries model.pt's sha256)
        metrics.json                             # the trained model's accuracy, size, FLOPs
        tasks/standard-<classes>.json            # standard model's accuracy on a task (standard cells)
        t<threshold>/modules.pt  modules.json    # modularize stage
        t<threshold>/tasks/<classes>-<key>.json  # reuse stage, one per task
        t<threshold>/record.json                 # the cell's record for this threshold

A stage is complete when its JSON exists and the checksum of its tensor file matches; anything
else (missing, truncated, corrupt) is recomputed, never silently used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bench.errors import CorruptArtifact

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


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None when it is missing or unreadable (logged)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable %s (%s); it will be recomputed", path, exc)
        return None


def save_tensors(path: Path, obj: Any) -> str:
    """``torch.save`` ``obj`` atomically; returns the file's sha256 for the stage's JSON."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def load_tensors(path: Path, sha256: str | None, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by ``save_tensors`` with ``weights_only=True`` after checking its sha256.

    Raises CorruptArtifact when the file is missing, altered or unreadable.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptArtifact(f"{path} is missing") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptArtifact(f"{path} does not match its recorded checksum")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or unsafe file
        raise CorruptArtifact(f"{path} cannot be loaded: {exc}") from None


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (parallel executors computing the same stage wait)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def threshold_dir(train_dir: Path, threshold: float) -> Path:
    """Directory of one module threshold inside a trained model's directory."""
    return train_dir / f"t{threshold:g}"


def classes_label(classes: tuple[int, ...] | list[int]) -> str:
    """'0-1-2' for classes (0, 1, 2)."""
    return "-".join(str(c) for c in classes)
