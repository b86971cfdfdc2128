"""Device choice and the environment a record names: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bench.errors import UsageError
from bench.pipeline import env


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(env, "mps_works", lambda: pytest.fail("MPS probed although CUDA is there"))
    assert env.resolve_device("auto") == torch.device("cuda")


def test_auto_takes_mps_when_it_works(no_cuda, monkeypatch):
    monkeypatch.setattr(env, "mps_works", lambda: True)
    assert env.resolve_device("auto") == torch.device("mps")


def test_auto_falls_back_to_the_cpu(no_cuda, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert env.resolve_device("auto") == torch.device("cpu")


def test_an_mps_backend_that_fails_our_operations_is_not_used(no_cuda, monkeypatch):
    """On this machine MPS tensors cannot be created: claiming MPS is available must not select it."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert not env.mps_works()
    assert env.resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(("name", "message"), [
    ("mps", "MPS is not available"), ("cuda", "no CUDA device"), ("tpu9", "bad --device 'tpu9'"),
])
def test_explicit_devices_are_checked(no_cuda, monkeypatch, name, message):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UsageError, match=message):
        env.resolve_device(name)


def test_device_names(monkeypatch):
    monkeypatch.setattr(env, "cpu_name", lambda: "Apple M2")
    assert env.device_name(torch.device("mps")) == "Apple M2 (MPS)"
    assert env.device_name(torch.device("cpu")) == "Apple M2"


def test_cpu_name_on_macos_asks_sysctl(monkeypatch):
    seen = []

    def run(args, **kwargs):
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, stdout="Apple M3 Pro\n")

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(subprocess, "run", run)
    assert env.cpu_name() == "Apple M3 Pro"
    assert seen == [["sysctl", "-n", "machdep.cpu.brand_string"]]


def test_cpu_name_without_proc_or_sysctl(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(env, "Path", lambda _: tmp_path / "absent")
    monkeypatch.setattr(env.platform, "processor", lambda: "Intel64 Family 6 Model 154")
    assert env.cpu_name() == "Intel64 Family 6 Model 154"


def test_synchronize_waits_on_the_right_backend(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waited.append("mps"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: waited.append(str(device)))
    for name in ("cpu", "mps", "cuda:1"):
        env.synchronize(torch.device(name))
    assert waited == ["mps", "cuda:1"]
