"""Check parsed JSON against a type declaration (TypedDicts, lists, dicts, unions, literals).

The record schema is declared once as TypedDicts (``bench.record``); this module walks such a
declaration so that the declaration is also the validator. Keys a TypedDict does not declare are
allowed (a newer writer may add optional figures); declared keys must have the declared type.
"""

import json
import types
import typing
from typing import Any, Literal, Union

_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def _kind(value: Any) -> str:
    """How a wrong value is named: a short scalar as written in JSON, a container by its kind."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 40):
        return repr(value)
    return {dict: "an object", list: "a list", str: "a long string"}.get(type(value), type(value).__name__)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(v) for v in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is list:
        return "a list"
    if origin is dict or typing.is_typeddict(hint):
        return "an object"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _scalar_ok(value: Any, hint: type) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def quoted(names: list[str], limit: int = 4) -> str:
    """``'a', 'b'``, or ``16 fields: 'a', 'b', 'c', 'd', …`` when there are more than ``limit``."""
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown if len(names) <= limit else f"{len(names)} fields: {shown}, …"


def _where(path: str) -> str:
    return f"'{path}'" if path else "the record"


def check_value(value: Any, hint: Any, path: str) -> str | None:
    """None when ``value`` fits ``hint``; otherwise what is wrong, naming the field by ``path``."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin is Literal:
        ok = value in typing.get_args(hint) and type(value) in {type(v) for v in typing.get_args(hint)}
        return None if ok else f"{_where(path)} should be {_describe(hint)}, got {_kind(value)}"
    if origin in (Union, types.UnionType):
        problems = [check_value(value, member, path) for member in typing.get_args(hint)]
        if all(problems):
            nested = [p for p, m in zip(problems, typing.get_args(hint), strict=True)
                      if m is not type(None) and _fits_shape(value, m)]
            return nested[0] if len(nested) == 1 else f"{_where(path)} should be {_describe(hint)}, got {_kind(value)}"
        return None
    if typing.is_typeddict(hint):
        return _check_typeddict(value, hint, path)
    if origin is list:
        return _check_items(value, list, enumerate(value) if isinstance(value, list) else (), hint, path)
    if origin is dict:
        return _check_items(value, dict, value.items() if isinstance(value, dict) else (), hint, path)
    return None if _scalar_ok(value, hint) else f"{_where(path)} should be {_describe(hint)}, got {_kind(value)}"


def _fits_shape(value: Any, hint: Any) -> bool:
    """Whether ``value`` is the container ``hint`` asks for (to report the nested problem of a union)."""
    if typing.is_typeddict(hint) or typing.get_origin(hint) is dict:
        return isinstance(value, dict)
    return typing.get_origin(hint) is list and isinstance(value, list)


def _check_items(value: Any, container: type, items: Any, hint: Any, path: str) -> str | None:
    if not isinstance(value, container):
        return f"{_where(path)} should be {_describe(hint)}, got {_kind(value)}"
    item_hint = typing.get_args(hint)[-1]
    for key, item in items:
        if container is dict and not isinstance(key, str):
            return f"{_where(path)} has a key that is not a string"
        label = f"{path}[{key}]" if container is list else (f"{path}.{key}" if path else str(key))
        problem = check_value(item, item_hint, label)
        if problem:
            return problem
    return None


def _check_typeddict(value: Any, hint: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"{_where(path)} should be an object, got {_kind(value)}"
    missing = [key for key in hint.__required_keys__ if key not in value]
    if missing:
        names = quoted(sorted(missing))
        return f"'{path}' is missing {names}" if path else f"missing {names}"
    hints = typing.get_type_hints(hint)
    for key, item_hint in hints.items():
        if key in value:
            problem = check_value(value[key], item_hint, f"{path}.{key}" if path else key)
            if problem:
                return problem
    return None
