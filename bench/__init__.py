"""modbench: a benchmark harness for DNN modularization methods.

For notebooks: ``bench.run(...)`` runs a grid as ``bench run`` does, ``bench.results(...)`` gives the
comparison as a DataFrame and ``bench.compare(...)`` the paired differences (``bench.api``).

The public plugin API: a plugin imports what it needs from ``bench`` alone, so the packages
behind it (``bench.protocol``, ``bench.modular``, ``bench.models``, ``bench.data``) may move
without breaking plugins. Names are imported on first use, so ``import bench`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.hookspecs import hookimpl

_PUBLIC = {
    "run": "bench.api",
    "results": "bench.api",
    "compare": "bench.api",
    "Method": "bench.protocol.method",
    "NoHparams": "bench.protocol.method",
    "TrainContext": "bench.protocol.method",
    "StageContext": "bench.protocol.method",
    "TrainedModel": "bench.protocol.method",
    "ModuleSet": "bench.protocol.modules",
    "ActivityStats": "bench.protocol.modules",
    "Recipe": "bench.protocol.recipe",
    "PostTrainingMethod": "bench.protocol.method",
    "MaskedMethod": "bench.modular.masked_method",
    "MaskSearch": "bench.modular.mask_search",
    "binarize": "bench.modular.straight_through",
    "extract": "bench.modular.extract",
    "threshold_masks": "bench.modular.activity",
    "maskable_units": "bench.modular.masking",
    "ModelSpec": "bench.models.spec",
    "ConvUnit": "bench.models.layers",
    "LinearUnit": "bench.models.layers",
    "Residual": "bench.models.layers",
    "DatasetSpec": "bench.data.builtin",
    "DataBundle": "bench.data.tensors",
    "TensorData": "bench.data.tensors",
}

__all__ = ["hookimpl", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
