"""An observer plugin for tests/test_faults.py, copied into a ``--plugins-dir``: it logs run events and,
on cue, sends its own process a signal.

``FAULT_LOG`` names the file events are appended to, one JSON object a line: ``label`` ('load' when
the plugin loads, 'train:mwt' for a stage_end, 'run_end:mwt'), ``time``, ``pid``, the cell's train
``directory`` and, for run_end, the ``record``. ``FAULT_KILL``, when set, is a JSON object: ``after``
(a label), optionally ``file`` (a glob under the cell's train directory to wait for first), ``delay``
(seconds) and ``signal`` ('SIGKILL': a crash; 'SIGINT': Ctrl-C).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from bench.hookspecs import hookimpl

KILL = json.loads(os.environ.get("FAULT_KILL") or "null")


def _log(label: str, **fields: Any) -> None:
    line = json.dumps({"label": label, "time": time.time(), "pid": os.getpid(), **fields}) + "\n"
    with open(os.environ["FAULT_LOG"], "a") as log:
        log.write(line)


def _signal_later(directory: str | None) -> None:
    """Wait for ``KILL['file']`` (if any) to appear, then ``KILL['delay']`` seconds, then send the signal."""
    if KILL.get("file"):
        while not list(Path(directory or ".").glob(KILL["file"])):
            time.sleep(0.0005)
    time.sleep(KILL["delay"])
    os.kill(os.getpid(), getattr(signal, KILL["signal"]))


def _arm(label: str, directory: str | None = None) -> None:
    if KILL is not None and KILL["after"] == label:
        threading.Thread(target=_signal_later, args=(directory,), daemon=True).start()


@hookimpl
def on_run_event(event: str, run: dict[str, Any], payload: dict[str, Any]) -> None:
    """Log stage_end and run_end; arm the signal when the event is the one ``FAULT_KILL`` waits for."""
    if event not in ("stage_end", "run_end"):
        return
    label = f"{payload['stage'] if event == 'stage_end' else event}:{run['method']}"
    _log(label, directory=run.get("directory"), record=payload if event == "run_end" else None)
    _arm(label, run.get("directory"))


_log("load")
_arm("load")
