"""A killed ``bench run`` leaves none of its processes behind: SIGTERM ends it as Ctrl-C does (one line, its
workers stopped), and after SIGKILL its workers and multiprocessing's resource tracker end on their own.

Each case starts a real two-worker run in a subprocess, kills it once a worker has logged a training epoch
(so both workers are up and computing), and waits for every process the run had started to be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from processes import HAS_PROC, alive, children

from bench.testing import TINY_DATASET, TINY_MODEL

pytestmark = [pytest.mark.heavy, pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc")]

GRID = ["run", "--methods", "standard,mwt", "--models", TINY_MODEL, "--datasets", TINY_DATASET, "--seeds", "0,1",
        "--tasks", "0,1", "--workers", "2", "--device", "cpu", "--set", "epochs=200", "--set", "batch_size=16"]
PATIENCE = 180  # seconds: an upper bound on starting the workers, or on their ending; never a speed goal


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {PATIENCE} s for {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_pooled_run_leaves_no_process(tmp_path, signum):
    log = tmp_path / "out.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    with open(log, "w") as out:
        run = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()", *GRID,
                                "--out", str(tmp_path / "runs")],
                               stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        wait_for(lambda: "epoch 1:" in log.read_text() or run.poll() is not None, "a worker's first epoch")
        assert run.poll() is None, log.read_text()
        started = children(run.pid)
        assert len(started) >= 3, started  # two workers and the resource tracker
        run.send_signal(signum)
        code = run.wait(timeout=PATIENCE)
    finally:
        if run.poll() is None:
            run.kill()
    wait_for(lambda: not any(alive(pid) for pid in started), f"processes {sorted(started)} to end")
    if signum == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM
        last = log.read_text().strip().splitlines()[-1]
        assert last == "terminated: finished stages are kept; run the same command again to resume"
