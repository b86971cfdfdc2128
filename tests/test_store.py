"""The run directory's files: atomic writes, checksummed tensor files, stable keys."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.errors import CorruptArtifact
from bench.pipeline import layout, store


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_json_is_atomic_and_leaves_no_temp_files(tmp_path: Path):
    path = tmp_path / "deep" / "er" / "record.json"
    store.write_json(path, {"a": 1, "b": [0.5, None], "path": Path("x/y"), "t": torch.tensor([1, 2])})
    assert json.loads(path.read_text()) == {"a": 1, "b": [0.5, None], "path": "x/y", "t": [1, 2]}
    store.write_json(path, {"a": 2})  # replaces the old file whole
    assert store.read_json(path) == {"a": 2}
    assert leftovers(path.parent) == []
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path: Path):
    path = tmp_path / "record.json"
    store.write_json(path, {"ok": True})
    with pytest.raises(TypeError, match="cannot store object in JSON"):
        store.write_json(path, {"bad": object()})
    assert store.read_json(path) == {"ok": True}
    assert leftovers(tmp_path) == []


def test_read_json_missing_or_corrupt_is_none(tmp_path: Path):
    assert store.read_json(tmp_path / "missing.json") is None
    half = tmp_path / "half.json"
    half.write_text('{"schema": 1, "tas')
    assert store.read_json(half) is None
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert store.read_json(binary) is None


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, str, dict]:
    state = {"weight": torch.randn(4, 3), "steps": torch.tensor(7), "names": ["conv", "fc"], "unit": "kernel",
             "sizes": [3, 4], "masks": torch.rand(2, 5) > 0.5, "extra": {}}
    path = tmp_path / "model.pt"
    digest = store.save_tensors(path, state)
    return path, digest, state


def test_save_and_load_tensors_round_trip(saved):
    path, digest, state = saved
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = store.load_tensors(path, digest)
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(loaded[key], value)
        else:
            assert loaded[key] == value
    assert leftovers(path.parent) == []
    assert store.load_tensors(path, None)["unit"] == "kernel"  # no checksum: load as it is


def test_load_is_weights_only(tmp_path: Path):
    """A file that would run code on load (any pickled object) is refused even with the right checksum."""

    class Sneaky:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Sneaky()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CorruptArtifact, match="is not a safe tensor file") as err:
        store.load_tensors(path, digest)
    assert "weights_only=False" not in str(err.value)  # torch's advice to load it unsafely is never relayed


def test_a_flipped_byte_is_corrupt(saved):
    path, digest, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="does not match its recorded checksum"):
        store.load_tensors(path, digest)


def test_a_truncated_file_is_corrupt(saved):
    path, digest, _ = saved
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptArtifact, match="checksum"):
        store.load_tensors(path, digest)
    with pytest.raises(CorruptArtifact, match="is not a safe tensor file"):  # without a checksum: unreadable
        store.load_tensors(path, None)


def test_a_missing_file_is_corrupt(saved):
    path, digest, _ = saved
    path.unlink()
    with pytest.raises(CorruptArtifact, match="is missing"):
        store.load_tensors(path, digest)


def test_corrupt_artifact_is_a_run_failure():
    assert CorruptArtifact.exit_code == 1


def test_key_of_is_stable_and_order_independent():
    payload = {"method": "mwt", "seed": 0, "hparams": {"alpha": 0.5, "beta": 1.5}, "path": Path("runs")}
    key = store.key_of(payload)
    assert key == store.key_of(dict(reversed(list(payload.items()))))
    assert key == store.key_of({**payload, "hparams": {"beta": 1.5, "alpha": 0.5}})
    assert len(key) == 12 and all(c in "0123456789abcdef" for c in key)
    # stable across processes and versions: pinned to the sha256 of the sorted JSON
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    assert key == hashlib.sha256(blob).hexdigest()[:12]
    assert store.key_of({**payload, "seed": 1}) != key
    assert store.key_of({"a": 1}) == "f9d86028c6e0"  # sha256(b'{"a": 1}'): a change re-keys every cache


def test_layout_helpers(tmp_path: Path):
    assert layout.threshold_dir(tmp_path, 0.9) == tmp_path / "t0.9"
    assert layout.threshold_dir(tmp_path, 0.5) == tmp_path / "t0.5"
    assert layout.threshold_dir(tmp_path, 1.0) == tmp_path / "t1.0"
    assert layout.threshold_dir(tmp_path, 0.9000001) != layout.threshold_dir(tmp_path, 0.9)  # exact names
    assert layout.task_file(tmp_path, (2, 3)) == tmp_path / "2-3.json"
    assert store.classes_label((0, 1, 2)) == "0-1-2"
    assert store.classes_label([7]) == "7"


LOCK_PROBE = """
import sys
from filelock import FileLock, Timeout
try:
    FileLock(sys.argv[1], timeout=0.2).acquire()
    print("acquired")
except Timeout:
    print("busy")
"""


def lock_probe(directory: Path) -> str:
    """What another process gets when it tries the directory's lock for 0.2 s."""
    return subprocess.run([sys.executable, "-c", LOCK_PROBE, str(directory / ".lock")], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_locked_excludes_other_processes_until_released(tmp_path: Path):
    directory = tmp_path / "a" / "b"
    with store.locked(directory):
        assert directory.is_dir()
        assert lock_probe(directory) == "busy"
    assert lock_probe(directory) == "acquired"
    with store.locked(directory):  # taken again after release
        assert lock_probe(directory) == "busy"


def test_pickle_module_unused_by_loader(saved):
    """load_tensors must not fall back to plain pickle for a damaged torch file."""
    path, _, _ = saved
    path.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CorruptArtifact):
        store.load_tensors(path, None)


def test_nothing_in_the_package_imports_fcntl():
    """POSIX-only modules stay out, so modbench installs and runs on macOS and Windows (locks: filelock)."""
    import ast

    package = Path(__file__).resolve().parent.parent / "bench"
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("fcntl", "termios", "resource") for n in names), path
