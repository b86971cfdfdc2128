"""Autocast helpers for the modular layers: the dtype a product runs in, and a region without autocast."""

from __future__ import annotations

import contextlib

import torch


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a matmul reading ``t`` runs in: autocast's on ``t``'s device when it is on, else ``t``'s."""
    if t.is_floating_point() and torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype


def without_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device_type`` when it is on (nothing to enter otherwise)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
