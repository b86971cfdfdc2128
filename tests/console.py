"""``bench`` run in process, as the console script runs it: exit code, standard output, standard error."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import bench.cli


@dataclass
class Result:
    """What one ``bench`` command did: exit code, standard output, standard error."""

    code: int
    out: str
    err: str

    def line(self) -> str:
        """The one line on standard error (asserting there is exactly one, and no traceback)."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]

    def one_line_error(self) -> str:
        """The one stderr line of a failed command, which starts with 'error: '."""
        line = self.line()
        assert line.startswith("error: "), line
        return line


def run_main(args: list[object]) -> int:
    """``bench ARGS`` through ``bench.cli.main``; its exit code."""
    saved = sys.argv
    sys.argv = ["bench", *map(str, args)]
    try:
        bench.cli.main()
    except SystemExit as exit_info:
        return exit_info.code
    finally:
        sys.argv = saved
    raise AssertionError("bench.cli.main returned without sys.exit")


def invoker(capsys, monkeypatch) -> Callable[..., Result]:
    """A function running ``bench ...`` in process (wide console) and returning its Result."""
    monkeypatch.setenv("COLUMNS", "250")

    def invoke(*args: object) -> Result:
        capsys.readouterr()
        code = run_main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke
