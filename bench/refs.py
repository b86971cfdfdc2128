"""Names as typed: a registered name with keyword arguments (``vit_s:depth=4,width=0.25``).

The ground floor of the grid: the plugin registries and the grid both name models and data sets
with a ``Ref``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError

Args = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Ref:
    """A registered name with keyword arguments, as typed: ``vit_s:depth=4,width=0.25``."""

    name: str
    args: Args = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """The arguments as a dict."""
        return dict(self.args)

    @property
    def slug(self) -> str:
        """A file-name-safe label: ``vit_s-depth4-width0.25``."""
        return _safe("-".join([self.name, *(f"{k}{_format(v)}" for k, v in self.args)]))

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}:" + ",".join(f"{k}={_format(v)}" for k, v in self.args)


def _safe(text: str) -> str:
    """Only letters, digits, '_', '-', '=' and single dots: never a path separator or '..'."""
    text = re.sub(r"[^A-Za-z0-9_.=-]", "_", text)
    return re.sub(r"\.{2,}", "_", text)


def _format(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_value(raw: str) -> Any:
    """'4' -> 4, '0.25' -> 0.25, 'true'/'false' -> bool, anything else stays a string."""
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw.strip()


def parse_refs(items: list[str] | tuple[str, ...]) -> list[Ref]:
    """Parse ``--models`` / ``--datasets`` values.

    Items are comma separated; ``name:key=value`` starts a reference with arguments and a later
    ``key=value`` without a colon continues the previous reference's arguments.
    """
    refs: list[tuple[str, dict[str, Any]]] = []
    for chunk in ",".join(items).split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        if ":" in chunk:
            name, first = chunk.split(":", 1)
            refs.append((name.strip(), {}))
            chunk = first
        elif "=" not in chunk:
            refs.append((chunk, {}))
            continue
        if not refs or "=" not in chunk:
            raise UsageError(f"cannot read '{chunk}': write arguments as name:key=value (e.g. vgg16:width=0.25)")
        key, value = chunk.split("=", 1)
        refs[-1][1][key.strip()] = parse_value(value)
    return [Ref(name, tuple(sorted(args.items()))) for name, args in refs]
