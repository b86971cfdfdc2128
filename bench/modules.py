"""Deprecated since 0.2: module masks and activity moved to ``bench.protocol.modules`` and
``bench.modular.activity``; import them from ``bench`` (``from bench import threshold_masks``). Kept,
with a DeprecationWarning, for one release."""

from bench.moved import moved

__getattr__ = moved(__name__, {"ActivityStats": "bench.protocol.modules", "ModuleSet": "bench.protocol.modules",
                               "threshold_masks": "bench.modular.activity",
                               "collect_activity": "bench.modular.activity"})
