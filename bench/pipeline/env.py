"""The environment a record was produced in: versions, device, git commit."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F


def git_commit() -> str | None:
    """The commit of the modbench checkout (with '+dirty' when modified), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3', the CPU's name, or 'Apple M2 (MPS)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} (MPS)" if device.type == "mps" else cpu_name()


def cpu_name() -> str:
    """The processor's marketing name on Linux (``/proc/cpuinfo``) and macOS (``sysctl``); elsewhere
    what ``platform`` knows (Windows: 'Intel64 Family 6 Model ...')."""
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device) -> dict[str, str | int | None]:
    """What a record carries about where it was computed."""
    try:
        version = importlib.metadata.version("modbench")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "modbench": version,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "git": git_commit(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def mps_works() -> bool:
    """Whether Apple's MPS backend is here and runs the operations a cell needs (conv, BN, attention,
    index_add, bincount); a backend that lacks one of them is left alone and the CPU is used."""
    if not torch.backends.mps.is_available():
        return False
    try:
        x = torch.randn(2, 3, 8, 8, device="mps")
        y = F.batch_norm(F.conv2d(x, torch.randn(4, 3, 3, 3, device="mps")), None, None, training=True)
        tokens = y.flatten(2).transpose(1, 2)  # (2, 36, 4)
        z = F.scaled_dot_product_attention(tokens, tokens, tokens).index_add(-1, torch.tensor([0], device="mps"),
                                                                             tokens[..., :1])
        torch.bincount(z.argmax(-1).flatten(), minlength=4).cpu()
    except (RuntimeError, NotImplementedError):
        return False
    return True


DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA, else Apple's MPS where it runs our operations, else CPU; an explicit 'cpu',
    'cuda', 'cuda:N' or 'mps' is checked for availability (UsageError when absent)."""
    from bench.errors import UsageError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_works() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in DEVICE_TYPES:  # 'meta', 'xla', ...: torch names them, cells cannot run
        raise UsageError(f"bad --device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available here (use --device cpu)")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA, MPS); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def prepare_process(deterministic: bool = False) -> None:
    """Process-wide settings every worker makes before its first cell (local runner, Ray, Slurm alike)."""
    torch.set_flush_denormal(True)  # denormal weights late in a cosine schedule slow CPU math 10-40x
    if deterministic:  # cuBLAS reads it when its first handle is created: before any CUDA work
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def configure_kernels(device: torch.device, deterministic: bool) -> None:
    """Kernel choice for one cell: cuDNN autotuning on GPUs, or deterministic algorithms when asked.

    In deterministic mode an operation without a deterministic kernel warns instead of failing, and
    attention leaves cuDNN's kernel, whose backward pass is not deterministic (seen on an H100).
    """
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cuda.enable_cudnn_sdp(not deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic  # fixed 32x32 shapes


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``threads`` inside the block, restored after (0: left as they are)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
