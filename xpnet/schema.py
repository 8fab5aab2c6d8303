"""The checks a checkpoint's JSON description is held to, as small composable functions.

Each check is a function of ``(value, path)`` that raises :class:`Invalid` naming the path
(``layers[2].config.ratio``), what it holds and what was expected:
``layers[2].config.ratio is 'x' (type str); expected a number in [0, 1)``. The checkpoint builds
the description's schema from them, and each layer type's config fields (``xpnet.registry``) use them.
"""

from __future__ import annotations

import math

META_KEY = "__xpnet__"  # where a checkpoint file keeps its JSON description (.npz entry, safetensors metadata)


class Invalid(Exception):
    """A description that fails a check; the message names the path, the value and what was expected."""


def show(value) -> str:
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} (type {type(value).__name__})"


def fail(path: str, expected: str, value):
    raise Invalid(f"{path} is {show(value)}; expected {expected}")


def kind(types, expected: str):
    def check(v, path):
        if not isinstance(v, types) or isinstance(v, bool) and bool not in types:
            fail(path, expected, v)
    return check


def integer(low: int):
    def check(v, path):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            fail(path, f"an integer >= {low}", v)
    return check


def number(ok, expected: str):
    def check(v, path):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            fail(path, expected, v)
    return check


def one_of(choices):
    def check(v, path):
        if not isinstance(v, str) or v not in choices:
            fail(path, "one of " + ", ".join(map(repr, choices)), v)
    return check


def optional(inner):
    def check(v, path):
        if v is not None:
            inner(v, path)
    return check


def list_of(item, expected: str, min_len: int = 0):
    def check(v, path):
        if not isinstance(v, list) or len(v) < min_len:
            fail(path, expected, v)
        for i, x in enumerate(v):
            item(x, f"{path}[{i}]")
    return check


def fields(required: dict, optional: dict | None = None):
    """A JSON object with all of ``required``'s keys, any of ``optional``'s, no other."""
    optional = optional or {}

    def check(v, path):
        if not isinstance(v, dict):
            fail(path, f"a JSON object with the keys {list(required)}", v)
        missing = [k for k in required if k not in v]
        if missing:
            raise Invalid(f"{path} lacks {missing}; expected the keys {list(required)}")
        unknown = [k for k in v if k not in required and k not in optional]
        if unknown:
            raise Invalid(f"{path} has unknown keys {unknown}; expected only {[*required, *optional]}")
        for k, inner in {**required, **optional}.items():
            if k in v:
                inner(v[k], f"{path}.{k}")
    return check


TEXT = kind((str,), "a string")
SHAPE = list_of(integer(0), "a shape: a list of integers >= 0")
POSITIVE = number(lambda v: v > 0, "a finite number > 0")
FRACTION = number(lambda v: 0 <= v < 1, "a number in [0, 1)")
FRACTION_CLOSED = number(lambda v: 0 <= v <= 1, "a number in [0, 1]")
