"""Test-session setup: built-in plugins only, bench.testing's fixtures, a fresh plugin state and 'bench' logger
after every test.

``MODBENCH_LOAD_PLUGINS=""`` keeps locally installed third-party plugins out of the tests (the
built-ins still load); subprocess tests that need installed plugins unset it themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["MODBENCH_LOAD_PLUGINS"] = ""

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    """Register bench.testing's fixtures unless its pytest11 entry point already did."""
    import bench.testing

    if not config.pluginmanager.is_registered(bench.testing):
        config.pluginmanager.register(bench.testing, "bench.testing")


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Forget every loaded plugin after each test (the next ``get_plugins`` loads the built-ins again)."""
    yield
    from bench.plugins.manager import reset_plugins

    reset_plugins()


@contextlib.contextmanager
def _bench_logger_kept() -> Iterator[None]:
    """The 'bench' logger as it was before the block: a run sends it to its console and stops it propagating,
    which changes what a later test's log capture sees."""
    log = logging.getLogger("bench")
    handlers, level, propagate = list(log.handlers), log.level, log.propagate
    try:
        yield
    finally:
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate


@pytest.fixture(autouse=True)
def _fresh_bench_logger():
    """Put the 'bench' logger back as the test found it."""
    with _bench_logger_kept():
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train fastest on one thread: two spin-wait for each other when both cores of a
    small machine are busy (several times slower). For modules whose tests run many tiny grids."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyStandard:
    """The standard model of ``bench.testing``'s tiny grid (task 0,1), computed once a test session: its train,
    evaluate, modularize and reuse stages, without the record. ``copy_to(out)`` puts them in a runs folder, so a
    tiny grid run there loads that model instead of training it again (and writes the standard record itself).

    ``workers`` is the run's ``--workers``: it sets the threads a cell computes on, which change a CPU's sums,
    so each value has its own copy (the one a run with that value computes)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def copy_to(self, out: Path, workers: int | str = 1) -> Path:
        """Copy the stages into ``out`` (created); returns ``out``."""
        source = self.root / f"workers-{workers}" / "runs"
        if not source.exists():
            from bench.pipeline.runner import run_grid
            from bench.testing import make_tiny_grid

            with _bench_logger_kept():
                run_grid(make_tiny_grid(source), executor_options={"workers": workers})
            for record in source.rglob("record.json"):
                record.unlink()
        return Path(shutil.copytree(source, out, dirs_exist_ok=True))


@pytest.fixture(scope="session")
def tiny_standard(tmp_path_factory) -> TinyStandard:
    """Copies of one tiny standard model a session (see ``TinyStandard``), for module fixtures running tiny grids."""
    return TinyStandard(tmp_path_factory.mktemp("tiny-standard"))
