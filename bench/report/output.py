"""Where a report goes: checks of ``--out`` and ``--plots`` before any work, and writes that fail in one line."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.errors import UsageError

WIDTH = 140  # a rich table written to a file or a pipe


def check_targets(out: Path | None, plots: Path | None) -> None:
    """UsageError when ``--out`` names a folder or ``--plots`` a file (checked before reading anything)."""
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name, e.g. --out {out / 'report.md'}")
    if plots is not None and plots.exists() and not plots.is_dir():
        raise UsageError(f"--plots {plots} is a file; give a folder for the PNG files")


@contextlib.contextmanager
def writing(option: str, target: Path) -> Iterator[None]:
    """Turn a failed write into one line naming the option and the path (exit code 2)."""
    try:
        yield
    except OSError as exc:
        raise UsageError(f"{option} {target}: cannot write there ({exc.strerror or exc})") from None


def as_text(renderable: Any) -> str:
    """A rich renderable as plain text, as wide as a wide terminal."""
    buffer = io.StringIO()
    Console(file=buffer, width=WIDTH).print(renderable)
    return buffer.getvalue()


def write_text(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` atomically; a place that cannot be written is a one-line error."""
    from bench.pipeline.store import atomic_write

    with writing("--out", out):
        atomic_write(out, text.encode())
