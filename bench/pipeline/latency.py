"""Inference latency of a reused module against its model, both timed the same way.

``latency_ratios`` times module and model in alternating rounds with ``torch.utils.benchmark``
(warm-up, synchronised timing, repeats until the spread is small) and divides their fastest
rounds: other work on the machine (another worker's cell) only ever slows a round down, so the
fastest round of each is the closest to its own cost. It does so at a throughput batch and at one
image, in the precision the run trains in. On a CUDA GPU each forward pass is captured in a CUDA graph
and replayed, so the times measure the GPU's work, not Python's launch overhead (which would
make any two models of equal depth look equally fast); on a CPU the passes run on one thread,
timed by its CPU time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from bench.pipeline.env import synchronize, torch_threads

LATENCY_PRECISIONS = ("fp32", "bf16")
LATENCY_WARMUP = 3  # untimed passes per model and batch size (GPU autotuning, allocator, caches)
LATENCY_ROUNDS = 3  # alternating module / model measurements; each side keeps its fastest round


def _timer(device: torch.device) -> Callable[[], float]:
    """The clock: the calling thread's CPU time on a CPU, else wall time after synchronising ``device``."""
    if device.type == "cpu":
        return time.thread_time

    def now() -> float:
        synchronize(device)
        return time.perf_counter()

    return now


@contextlib.contextmanager
def _quiet_cpp_extension() -> Iterator[None]:
    """Silence the warning torch.utils.benchmark's import logs on a machine with CUDA files but no CUDA runtime."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def call_seconds(run: Callable[[], object], device: torch.device, max_seconds: float = 0.25) -> float:
    """Median seconds of one call of ``run`` (torch.utils.benchmark), work on ``device`` included.

    Repeats until the spread (IQR / median) is under 10% or ``max_seconds`` have passed; GPU work
    is synchronised around every timed block. On a CPU it runs on one thread and counts that
    thread's CPU time: a ratio of two such times measures work, not how well a thread pool scales
    or how busy the machine is (on two cores shared with other jobs, two threads time 3-10x slower
    and wall-clock ratios swing by as much).
    """
    with _quiet_cpp_extension():
        from torch.utils import benchmark

    threads = 1 if device.type == "cpu" else torch.get_num_threads()
    timer = benchmark.Timer("run()", globals={"run": run}, num_threads=threads, timer=_timer(device))
    return timer.adaptive_autorange(threshold=0.1, min_run_time=min(0.05, max_seconds),
                                    max_run_time=max_seconds).median


def _graphed(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """``model(x)`` as the replay of a CUDA graph; RuntimeError when the pass cannot be captured."""
    side = torch.cuda.Stream(x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):  # capture needs a warmed-up model (cuDNN autotuning, caches)
        for _ in range(LATENCY_WARMUP):
            model(x)
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    return graph.replay


def _runners(models: tuple[nn.Module, ...], x: torch.Tensor) -> list[Callable[[], object]]:
    """One zero-argument pass per model, all of the same kind: CUDA graph replays, or eager calls."""
    if x.device.type == "cuda":
        try:
            return [_graphed(m, x) for m in models]
        except RuntimeError:  # an operation that cannot be captured: every model runs eagerly
            pass
    for m in models:
        for _ in range(LATENCY_WARMUP):
            m(x)
    return [functools.partial(m, x) for m in models]


def _ratio_at(module: nn.Module, reference: nn.Module, batch: int, precision: str, max_seconds: float) -> float:
    weight = next(reference.parameters())
    x = torch.randn(batch, 3, 32, 32, device=weight.device, dtype=weight.dtype)
    autocast = torch.autocast(weight.device.type, dtype=torch.bfloat16, enabled=precision == "bf16",
                              cache_enabled=False)
    with torch_threads(1 if x.device.type == "cpu" else 0), autocast:  # one thread, as call_seconds times
        run_module, run_reference = _runners((module, reference), x)
        module_seconds, reference_seconds = [], []
        for _ in range(LATENCY_ROUNDS):  # interleaved: a busy spell of the machine hits a round, not one side
            module_seconds.append(call_seconds(run_module, x.device, max_seconds / LATENCY_ROUNDS))
            reference_seconds.append(call_seconds(run_reference, x.device, max_seconds / LATENCY_ROUNDS))
    return min(module_seconds) / min(reference_seconds)


@contextlib.contextmanager
def _evaluating(*models: nn.Module) -> Iterator[None]:
    """Models in eval mode and gradients off inside; train/eval modes restored after."""
    modes = [m.training for m in models]
    try:
        with torch.no_grad():
            yield [m.eval() for m in models]
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)


def latency_ratios(module: nn.Module, reference: nn.Module, precision: str, throughput_batch: int, *,
                   max_seconds: float = 0.25) -> dict[str, float]:
    """Inference time of ``module`` over that of ``reference`` (both in eval mode, 32x32 images).

    ``latency_ratio`` at ``throughput_batch`` images, ``latency_ratio_b1`` at one image. Both
    models run in ``precision`` ('fp32', or 'bf16': bfloat16 autocast, as in training) and are
    timed the same way (``call_seconds``, ``max_seconds`` per model and batch size split over
    ``LATENCY_ROUNDS`` alternating rounds), the fastest round of each divided.
    """
    if precision not in LATENCY_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(LATENCY_PRECISIONS)}, not {precision!r}")
    with _evaluating(module, reference):
        return {"latency_ratio": _ratio_at(module, reference, throughput_batch, precision, max_seconds),
                "latency_ratio_b1": _ratio_at(module, reference, 1, precision, max_seconds)}

