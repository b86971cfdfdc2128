"""Errors that the command line turns into one clear line (never a traceback)."""

from __future__ import annotations


def a_type(name: str) -> str:
    """'an int', 'a float': a type's name with its article, for messages."""
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


class BenchError(Exception):
    """A problem the user can fix; the CLI prints the message alone.

    ``exit_code`` 2 means bad usage (unknown name, bad value), 1 a failed run.
    """

    exit_code = 2


class UsageError(BenchError):
    """Bad input on the command line or in a config file."""


class PluginError(BenchError):
    """A plugin failed to load, registered a duplicate name or an incomplete method."""


class DataNotFound(BenchError):
    """A dataset's files are missing: the message says where to put them."""


class CorruptArtifact(BenchError):
    """A stored file (checkpoint, masks) failed its checksum or could not be read."""

    exit_code = 1


class StageMissing(BenchError):
    """A stage that a read-only command (show, export) needs is missing or damaged; it never recomputes."""

    exit_code = 1


class StoreUnwritable(BenchError):
    """The runs directory cannot be written (a full disk, a read-only folder): the run stops there."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a scheduler's preemption) raised in the main thread: ends a run as Ctrl-C
    does, finished stages kept."""
