"""Test-session setup: built-in plugins only, bench.testing's fixtures, a fresh plugin state and 'bench' logger
after every test.

``MODBENCH_LOAD_PLUGINS=""`` keeps locally installed third-party plugins out of the tests (the
built-ins still load); subprocess tests that need installed plugins unset it themselves.
"""

from __future__ import annotations

import logging
import os

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


@pytest.fixture(autouse=True)
def _fresh_bench_logger():
    """Put the 'bench' logger back as the test found it: a run sends it to its console and stops it propagating,
    which changes what a later test's log capture sees."""
    log = logging.getLogger("bench")
    handlers, level, propagate = list(log.handlers), log.level, log.propagate
    yield
    log.handlers[:] = handlers
    log.setLevel(level)
    log.propagate = propagate


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train fastest on one thread: two spin-wait for each other when both cores of a
    small machine are busy (several times slower). For modules whose tests run many tiny grids."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
