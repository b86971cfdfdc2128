"""Operations one training step launches: the masked methods against the standard step.

Run with ``pytest tests/benchmarks/test_op_count.py --benchmark-only``. A step is what the runner
trains (``steps.method_steps``: the method's own ``train``, the paper preset's recipe, forward,
backward and optimizer), counted below autograd as a GPU launches them (``steps.count_ops``), on
the full-size models at batch 2: the count depends on the layers, not on their width or the batch.
Each masked step records its count over the standard step's (goal 1.5x) and the operations it adds
per masked unit; ``-s`` prints the operations it adds most of.
"""

from __future__ import annotations

import functools
from collections import Counter

import pytest
from steps import step_ops

pytestmark = pytest.mark.benchmark(group="op-count")

MODELS = {"vgg16": 12, "vit_s": 66}  # model -> masked units
PRECISIONS = {"fp32": (), "bf16": ("precision=bf16",)}  # bf16: autocast, as a GPU step runs
GOAL = 1.5


@functools.cache
def _standard_ops(model: str, precision: str) -> Counter[str]:
    return step_ops("standard", model, sets=PRECISIONS[precision], batch=2)


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("method", ["mwt", "nemo"])
@pytest.mark.parametrize("model", list(MODELS))
def test_step_operations(benchmark, record_ratio, model, method, precision):
    standard_ops = _standard_ops(model, precision)
    ops = benchmark.pedantic(step_ops, args=(method, model), kwargs={"sets": PRECISIONS[precision], "batch": 2},
                             rounds=1, iterations=1)
    standard, masked = sum(standard_ops.values()), sum(ops.values())
    ratio = masked / standard
    verdict = "met" if ratio <= GOAL else "MISSED"
    record_ratio("ops_vs_standard", ratio, f"{masked} ops against {standard}; goal {GOAL}x: {verdict}")
    record_ratio("ops_per_masked_unit", (masked - standard) / MODELS[model])
    print(f"\n{model} {method} {precision}: adds {(ops - standard_ops).most_common(12)}")
    assert masked > standard
