"""Deprecated since 0.2: the method protocol lives in ``bench.protocol.method``; import it from ``bench``
(``from bench import Method``). Kept, with a DeprecationWarning, for one release."""

from bench.moved import moved

__getattr__ = moved(__name__, {name: "bench.protocol.method" for name in (
    "Method", "NoHparams", "TrainContext", "StageContext", "TrainedModel", "missing_stages")})
