"""An observer plugin for tests/test_faults.py, copied into a ``--plugins-dir``: it logs run events and,
on cue, sends its own process a signal.

``FAULT_LOG`` names the file events are appended to, one JSON object a line: ``label`` ('load' when
the plugin loads, 'train:mwt' for a stage_end, 'run_end:mwt', 'checkpoint:2' when a long stage has saved
its checkpoint the second time), ``time``, ``pid``, the cell's train ``directory`` and, for run_end, the
``record``. ``FAULT_KILL``, when set, is a JSON object: ``after``
(a label), optionally ``file`` (a glob under the cell's train directory to wait for first), ``delay``
(seconds) and ``signal`` ('SIGKILL': a crash; 'SIGINT': Ctrl-C); or ``at`` (a label): the signal is sent
by the event itself (no time involved): a stage_end when the stage has computed its result and not written
it; a checkpoint when the checkpoint is saved. With
``"target": "run"`` the signal goes to the ``bench run`` process (``FAULT_RUN_PID``) rather than to this
one (a worker's event kills the run that started it).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from bench.hookspecs import hookimpl
from bench.pipeline.stages.modularize import FileCheckpoint

KILL = json.loads(os.environ.get("FAULT_KILL") or "null")


def _log(label: str, **fields: Any) -> None:
    line = json.dumps({"label": label, "time": time.time(), "pid": os.getpid(), **fields}) + "\n"
    with open(os.environ["FAULT_LOG"], "a") as log:
        log.write(line)


def _send() -> None:
    target = int(os.environ["FAULT_RUN_PID"]) if KILL.get("target") == "run" else os.getpid()
    os.kill(target, getattr(signal, KILL["signal"]))


def _signal_later(directory: str | None) -> None:
    """Wait for ``KILL['file']`` (if any) to appear, then ``KILL['delay']`` seconds, then send the signal."""
    if KILL.get("file"):
        while not list(Path(directory or ".").glob(KILL["file"])):
            time.sleep(0.0005)
    time.sleep(KILL["delay"])
    _send()


def _arm(label: str, directory: str | None = None) -> None:
    if KILL is not None and KILL.get("at") == label:
        _send()
    if KILL is not None and KILL.get("after") == label:
        threading.Thread(target=_signal_later, args=(directory,), daemon=True).start()


@hookimpl
def on_run_event(event: str, run: dict[str, Any], payload: dict[str, Any]) -> None:
    """Log stage_end and run_end; arm the signal when the event is the one ``FAULT_KILL`` waits for."""
    if event not in ("stage_end", "run_end"):
        return
    label = f"{payload['stage'] if event == 'stage_end' else event}:{run['method']}"
    _log(label, directory=run.get("directory"), record=payload if event == "run_end" else None)
    _arm(label, run.get("directory"))


def _observed(save: Any) -> Any:
    """``FileCheckpoint.save`` that logs and arms 'checkpoint:<n>' after the n-th save of this process."""
    saves = itertools.count(1)

    def observed_save(self: FileCheckpoint, state: Any) -> None:
        save(self, state)
        label = f"checkpoint:{next(saves)}"
        _log(label)
        _arm(label)

    return observed_save


FileCheckpoint.save = _observed(FileCheckpoint.save)
_log("load")
_arm("load")
