"""A process that imports modbench once and forks ``bench`` commands on request, for tests/test_faults.py.

Each line on standard input is a JSON list of runs to start together, each ``{"argv": [...], "env":
{...}, "stdout": path, "stderr": path}``; every run is a forked child calling ``bench.cli.main`` as the
console script does. When all have ended, one JSON line answers with their exit codes (-9: killed by
SIGKILL). Importing torch once keeps a run of a cached grid well under a second, so that a test can
crash and re-run a grid dozens of times.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from typing import Any

PRELOAD = ("torch", "torch._dynamo", "torch.utils.benchmark", "fvcore.nn", "pandas", "rich.console", "bench.cli",
           "bench.pipeline.runner", "bench.pipeline.cell", "bench.report.tables", "methods.mwt", "methods.standard",
           "methods.cnnsplitter")
CHILD_TIMEOUT = 300  # seconds: a run that hangs ends by SIGALRM instead of hanging the test


def child(run: dict[str, Any]) -> int:
    """Run one ``bench`` command in this (forked) process; its exit code."""
    signal.alarm(CHILD_TIMEOUT)
    # Ctrl-C raises as in a terminal even when the tests were started in the background (SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.update(run["env"], FAULT_RUN_PID=str(os.getpid()))
    for fd, key in ((1, "stdout"), (2, "stderr")):
        handle = os.open(run[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = ["bench", *run["argv"]]
    try:
        importlib.import_module("bench.cli").main()
    except SystemExit as exit_info:
        return exit_info.code if isinstance(exit_info.code, int) else 1
    except BaseException:
        traceback.print_exc()
    return 1


def start(run: dict[str, Any]) -> int:
    """Fork a child for ``run``; its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child(run)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def serve() -> None:
    """Answer every request line with the exit codes of its runs."""
    for module in PRELOAD:
        importlib.import_module(module)
    importlib.import_module("torch").set_num_threads(1)
    for line in sys.stdin:
        pids = [start(run) for run in json.loads(line)]
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        print(json.dumps(codes), flush=True)


if __name__ == "__main__":
    serve()
