"""Unpickling only what a data file may hold: built-in values and plain numpy arrays.

CIFAR's batches and CNNSplitter's published files are pickles. ``ArraysOnly`` builds what a pickle
holds without looking anything up (lists, dicts, numbers, strings, bytes) and numpy arrays, and
refuses every other global, so a payload that would run code fails to load and never runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class ArraysOnly(pickle.Unpickler):
    """An unpickler that builds built-in values and plain numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """Numpy's array constructors; UnpicklingError for any other global."""
        if (module, name) in NUMPY_ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which is neither a plain value nor a numpy array")

    def persistent_load(self, pid: Any) -> Any:
        """Refused: a data file has no persistent references."""
        raise pickle.UnpicklingError("it refers to persistent objects")


def load_arrays(path: Path, encoding: str = "ASCII") -> Any:
    """The pickle at ``path`` built by ``ArraysOnly`` (``encoding`` decodes Python 2 strings: 'latin1')."""
    with open(path, "rb") as f:
        return ArraysOnly(f, encoding=encoding).load()
