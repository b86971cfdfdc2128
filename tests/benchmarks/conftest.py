"""Benchmarks run only when asked: ``pytest tests/benchmarks --benchmark-only`` (CUDA ones with -m cuda).

Benchmarks that compare two things (a masked training step against the standard one, a module
against its model) record the ratio with the ``record_ratio`` fixture: it lands in the
benchmark's ``extra_info`` (``--benchmark-json``) and in a summary printed after the run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

_RATIOS: list[tuple[str, str, float, str]] = []


@pytest.fixture
def record_ratio(benchmark, request) -> Callable[..., None]:
    """``record_ratio(name, value, note="")``: keep a ratio of this benchmark for the summary."""

    def record(name: str, value: float, note: str = "") -> None:
        benchmark.extra_info[name] = value
        _RATIOS.append((request.node.name, name, value, note))

    return record


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pytest-benchmark (5.3 and before) reads ``item._nodeid``, which pytest 9 no longer sets: give it the node id."""
    for item in items:
        if not hasattr(item, "_nodeid"):
            item._nodeid = item.nodeid


def pytest_terminal_summary(terminalreporter) -> None:
    """The recorded ratios, one line each."""
    if not _RATIOS:
        return
    terminalreporter.section("modbench ratios")
    width = max(len(test) for test, *_ in _RATIOS)
    for test, name, value, note in _RATIOS:
        terminalreporter.write_line(f"{test:{width}s}  {name} {value:.3f}  {note}")
