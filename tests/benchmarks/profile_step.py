"""Profile training steps of a method as the runner trains them (``steps.method_steps``), on CUDA or a CPU.

For each method: the operations one step dispatches (``steps.count_ops``), the time of ``--steps``
steps (391 at batch 128: a 50,000-image epoch), and with ``--profile-steps`` the kernels the device
ran per step and the host syncs it saw, with a Chrome trace and the profiler's table in ``--out``.
``--compile`` runs the loss function (forward and loss) through ``torch.compile``
(``reduce-overhead``: CUDA graphs). Example::

    python tests/benchmarks/profile_step.py --methods standard,mwt,nemo --model vgg16 --batch 128 --steps 391
    python tests/benchmarks/profile_step.py --methods mwt --model vgg16 --profile-steps 5 --out prof
    python tests/benchmarks/profile_step.py --methods nemo --model vit_s:depth=2,width=0.125 --device cpu --batch 4
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from unittest import mock

import torch
from steps import count_ops, method_steps
from torch.profiler import ProfilerActivity, profile

import bench.pipeline.training as training

SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy ", "cudaMemcpyAsync", "aten::item",
               "aten::_local_scalar_dense")


def _compiled(mode: str):
    """``torch.compile`` as the training loop calls it, with ``mode`` (None: the loop's own call)."""
    if mode == "none":
        return contextlib.nullcontext()
    real = torch.compile
    return mock.patch.object(training.torch, "compile", lambda fn, **kw: real(fn, **kw, mode=mode))


def _profile(steps, n: int, cuda: bool, out: Path | None) -> None:
    """Profile ``n`` steps: kernels per step, host syncs, the table (and trace) of the busiest operations."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as trace:
        steps(n)
    events = trace.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    syncs = {e.key: e.count for e in events if any(e.key.startswith(s.strip()) for s in SYNC_EVENTS)}
    print(f"  device kernels per step: {kernels / n:.1f}; host syncs and scalar reads over {n} steps: {syncs}")
    table = events.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=30)
    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        trace.export_chrome_trace(str(out / "trace.json"))
        (out / "table.txt").write_text(table)


def _run(method: str, args: argparse.Namespace) -> None:
    sets = tuple(args.set) + (("compile=true",) if args.compile != "none" else ())
    cuda = args.device.startswith("cuda")
    with _compiled(args.compile):
        steps = method_steps(method, args.model, device=args.device, sets=sets, batch=args.batch)
        steps(3)  # warm: compilation, cuDNN autotuning, optimizer state
        if args.compile == "none":
            counted = count_ops(lambda: steps(2)) - count_ops(lambda: steps(1))
            print(f"{method}: operations per step {sum(counted.values())}, most {counted.most_common(6)}")
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        steps(args.steps)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(f"{method} {args.model} batch {args.batch} compile {args.compile}: {args.steps} steps "
              f"({args.steps * args.batch} images) in {seconds:.2f} s, {1000 * seconds / args.steps:.2f} ms per step")
        if args.profile_steps:
            _profile(steps, args.profile_steps, cuda, args.out / method if args.out else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="mwt", help="comma-separated, each measured in turn")
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--profile-steps", type=int, default=0, help="profiled steps after the timed ones")
    parser.add_argument("--compile", default="none", choices=["none", "default", "reduce-overhead"])
    parser.add_argument("--set", action="append", default=[], help="recipe values, as bench run --set")
    parser.add_argument("--out", type=Path, default=None, help="folder for <method>/trace.json and table.txt")
    args = parser.parse_args()
    for method in args.methods.split(","):
        _run(method, args)


if __name__ == "__main__":
    main()
