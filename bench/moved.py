"""Old import paths kept for one release: a module whose names moved answers them with a DeprecationWarning.

``bench.method``, ``bench.modules`` and ``bench.extract`` were modules of the first release; plugins
written against them keep loading, and the warning names the new spelling (``from bench import Method``).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved(old: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the deprecated module ``old``: each of ``names`` (name -> the module that
    holds it now) is found there, with a DeprecationWarning naming its new spelling."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} is deprecated and will be removed in the next release; "
                      f"use {new_spelling(name, names[name])}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__


def new_spelling(name: str, module: str) -> str:
    """``from bench import X`` for the public API, else the name's own module."""
    import bench

    return f"`from bench import {name}`" if name in bench.__all__ else f"`from {module} import {name}`"
