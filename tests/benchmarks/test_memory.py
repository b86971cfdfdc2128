"""Modularization memory does not grow with the data set (counts are accumulated, not masks).

Each measurement runs in a fresh process that resets the kernel's peak-RSS mark after loading the
data and model, then reports the peak reached by the activity pass alone. glibc is told to map
every allocation above 64 KiB on its own, so freed tensors leave the resident set at once and the
peak measures live memory, not the allocator's caching.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, sys, torch
from bench.data.builtin import load_synthetic
from bench.data import BatchLoader
from bench.modular.masking import attach_generators
from bench.models.cnn import simcnn
from bench.modular.activity import collect_activity

size = int(sys.argv[1])
torch.manual_seed(0)
data = load_synthetic(size=size, test_size=10)
model = attach_generators(simcnn(10, width=0.25))
loader = BatchLoader(data.train, 256, mean=data.mean, std=data.std)
warm = [batch for _, batch in zip(range(8), loader)]
collect_activity(model, warm, 10, 64)  # warm-up: the allocator reaches its steady state
del warm
def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak resident set size
before = peak_kb()
stats = collect_activity(model, loader, 10, 64)
print(json.dumps({"peak_kb": peak_kb() - before, "samples": int(stats.class_totals.sum())}))
"""


def _peak(size: int) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(size)], capture_output=True, text=True, check=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_activity_pass_memory_is_independent_of_data_set_size(benchmark):
    small, large = _peak(5_000), benchmark.pedantic(_peak, args=(50_000,), rounds=1, iterations=1)
    assert large["samples"] == 10 * small["samples"]
    assert large["peak_kb"] <= small["peak_kb"] * 1.10, (small, large)  # 10x the data, within 10%
