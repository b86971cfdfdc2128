"""Deprecated since 0.2: physical extraction lives in ``bench.modular.extract``; import it from ``bench``
(``from bench import extract``). Kept, with a DeprecationWarning, for one release.

Importing this module makes ``bench.extract`` (the package attribute) this module rather than the
function; the module is callable, so ``from bench import extract; extract(model, keep)`` works either way.
"""

import sys
import types
from typing import Any

from bench.moved import moved

__getattr__ = moved(__name__, {"extract": "bench.modular.extract"})


class _CallableModule(types.ModuleType):
    """This module, callable as the function it stands for."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from bench.modular.extract import extract

        return extract(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
