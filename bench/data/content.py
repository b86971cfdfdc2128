"""Content keys: what a data set a user can change on disk holds, for the store's keys.

A data set read from files (``npz:path=``, ``folder:path=``, CIFAR and SVHN under ``--data-root``)
is keyed by their content, so results computed from other data are never reused. Hashing every
byte of a large folder on each run would be slow, so a key has two parts: the ``fingerprint`` (the
files' names, sizes, modification and change times, hashed: one ``stat`` per file) and the
``checksum`` of their bytes. The checksum is the key; the runner keeps it beside its fingerprint and
computes it again only when the fingerprint differs (a touched or copied file costs one checksum;
a changed one gives another key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

CHUNK = 1 << 20


def data_files(roots: Sequence[Path]) -> Iterator[tuple[Path, str]]:
    """Every file of ``roots`` (a file, or the files below a folder, hidden ones left out), in a stable order, as
    (path, its name: the root's position and the path relative to the root, ``1:cat/001.png``)."""
    for index, root in enumerate(roots):
        if root.is_file():
            yield root, f"{index}:{root.name}"
            continue
        below = (p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                       p.relative_to(root).parts))
        for path in sorted(below):
            yield path, f"{index}:{path.relative_to(root).as_posix()}"


def fingerprint(roots: Sequence[Path]) -> str:
    """A hash of the files' names, sizes and times: cheap, and different whenever a file was written."""
    digest = hashlib.sha256()
    for path, name in data_files(roots):
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\n".encode())
    return digest.hexdigest()


def checksum(roots: Sequence[Path]) -> str:
    """The sha256 of the files' relative names and bytes: the same data anywhere gives the same key."""
    digest = hashlib.sha256()
    for path, name in data_files(roots):
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())  # unambiguous: name and length, then bytes
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
    return digest.hexdigest()
