"""Type checks of user-written values against a dataclass's annotations, with one-line messages.

A suite's sections (`recipe`, `data`) map onto dataclasses; their annotations are the schema. Checking them
here, before any trial starts, turns `recipe.epochs: 2.5` or `data.max_per_class: abc` into one line naming
the field instead of a traceback inside a Ray worker.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from typing import Any

from harness.core.errors import LtbenchError

MAX_SEED = 2**32 - 1  # numpy's limit; torch generators take seed * 1_000_003 + epoch, which must fit 64 bits


def matches(value: Any, expected: Any) -> bool:
    """Whether a YAML value fits an annotation: int is not bool, a float field takes an int, a tuple field
    takes a list, `X | None` takes None."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if origin is tuple or origin is list:
        inner = typing.get_args(expected)[:1] or (Any,)
        return isinstance(value, list | tuple) and all(inner[0] is Any or matches(v, inner[0]) for v in value)
    return True  # annotations we do not model are checked by the dataclass itself


def describe(expected: Any) -> str:
    """An annotation as a user reads it: 'an integer', 'a number or null', 'a list of integers'."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(option) for option in typing.get_args(expected))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if expected in names:
        return names[expected]
    if origin in (tuple, list):
        return f"a list of {describe(typing.get_args(expected)[0]).removeprefix('an ').removeprefix('a ')}s"
    return str(expected)


Rule = tuple[Callable[[Any], bool], str]


def check_fields(where: str, cls: type, values: dict[str, Any], rules: dict[str, Rule] | None = None) -> None:
    """Check each of `values` against `cls`'s annotation, then against its rule (predicate, what it must be).

    Unknown keys are left to the caller (which lists the valid ones).
    """
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in hints:
            continue
        if not matches(value, hints[key]):
            raise LtbenchError(f"{where}.{key} must be {describe(hints[key])}, got {value!r}")
        rule = (rules or {}).get(key)
        if rule is not None and value is not None and not rule[0](value):
            raise LtbenchError(f"{where}.{key} must be {rule[1]}, got {value!r}")


def is_finite_number(value: Any) -> bool:
    """An int or float (not bool) that is neither NaN nor infinite: YAML reads `.nan`, `.inf` and `1e400` as
    floats, which pass every `<`/`>` check the wrong way."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED
