"""modbench: a benchmark harness for DNN modularization methods.

Plugin authors need ``hookimpl`` (the marker of hook implementations); everything else lives in
the submodules (``bench.method``, ``bench.masked_method``, ``bench.extract``...).
"""

from bench.hookspecs import hookimpl

__all__ = ["hookimpl"]
