"""One training step of a method as the runner trains it, and the operations it launches.

``method_steps`` runs a method's own ``train`` with a ``fit`` that drives the real training loop
(``bench.pipeline.training.fit``: optimizer, schedule, autocast, logged terms) over given batches,
so a step is what a cell runs, not a copy of it. ``count_ops`` counts the operations a call
dispatches below autograd (forward, backward and optimizer alike), the way a GPU launches them:
one per operation that computes, none for views, aliases and bare allocations. A step's count is
that of ``n + 1`` batches minus that of ``n``, so the optimizer's construction and the epoch's
closing host syncs cancel out.

Used by ``test_op_count.py`` (the benchmark that prints the counts), ``profile_step.py`` (a CUDA
or CPU profile of one step) and the default suite's ``tests/test_step_operations.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.grid.resolve import Resolver
from bench.grid.settings import parse_overrides
from bench.pipeline.training import Schedule, cross_entropy_loss, fit
from bench.plugins.manager import get_plugins
from bench.protocol.method import TrainContext
from bench.refs import parse_refs

# operations that launch no work on a device: bare allocations, profiler marks, and reading a
# scalar (counted apart: on a GPU tensor it is a host sync; AdamW reads its CPU step counters)
NO_WORK = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "resize_",
           "_record_function_enter_new", "_record_function_exit", "_local_scalar_dense"}


class _OpCounter(TorchDispatchMode):
    """Counts the operations dispatched below autograd that do work, and the scalars read back."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.scalar_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in NO_WORK:
            self.ops[name] += 1
        self.scalar_reads += name == "_local_scalar_dense"
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> Counter[str]:
    """Operations ``fn()`` dispatches that do work, by name (views, allocations and scalar reads left out)."""
    counter = _OpCounter()
    with counter:
        fn()
    return counter.ops


class _Batches(list):
    """A fixed list of (x, y) batches with the loader interface ``fit`` reads."""

    def set_epoch(self, epoch: int) -> None:
        """Every epoch is the same batches."""


def method_steps(method: str, model: str, device: str = "cpu", sets: tuple[str, ...] = (), batch: int = 8,
                 preset: str = "paper", dataset: str = "cifar10") -> Callable[[int], None]:
    """``steps(n)``: ``method`` trains ``model`` (as typed: ``vit_s:depth=4``) for ``n`` steps on fixed
    random batches, with the preset's recipe for that cell and ``sets`` (``--set`` items:
    ``precision=bf16``) on ``device``; the model is built once and carries on from step to step."""
    resolver = Resolver(get_plugins(), preset)
    model_ref = resolver.model(parse_refs([model])[0])
    dataset_ref = resolver.dataset(parse_refs([dataset])[0])
    cell = resolver.cell(method, model_ref, dataset_ref, 0, parse_overrides(list(sets)))
    torch.manual_seed(0)
    dev = torch.device(device)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.arange(batch, device=dev) % 10
    runs: dict[str, Callable] = {}

    def capture(model: torch.nn.Module, loss_fn: Callable | None = None, groups: list[dict] | None = None) -> list:
        runs["fit"] = lambda n: fit(model, _Batches([(x, y)] * n), None, cell.recipe,
                                    Schedule(1, cell.recipe.lr), loss_fn or cross_entropy_loss, groups)
        return []

    ctx = TrainContext(cell.spec, model_ref.kwargs, None, dev, cell.recipe, cell.hparams, 0, fit=capture,
                       task_loss=cross_entropy_loss, new_model=lambda: cell.spec.build(10, **model_ref.kwargs).to(dev))
    ctx.model = cell.method.build(ctx).to(dev)
    cell.method.train(ctx)
    return runs["fit"]


def step_ops(method: str, model: str, **kwargs) -> Counter[str]:
    """The operations one steady training step of ``method`` on ``model`` dispatches (see ``method_steps``)."""
    steps = method_steps(method, model, **kwargs)
    steps(2)  # warm: momentum buffers and lazy state exist from here on
    return count_ops(lambda: steps(3)) - count_ops(lambda: steps(2))
