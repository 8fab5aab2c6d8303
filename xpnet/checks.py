"""Argument checks, once: each turns a value into what the caller needs or raises a
:class:`~xpnet.errors.ConfigError` that names the argument, what it got and what it takes.

Library functions call these; the command line's argument types (``xpnet.cli``) wrap them.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import ConfigError


def size_arg(name: str, value, least: int = 1) -> int:
    """``value`` as an int >= ``least``; refuses floats (4.9), bools and strings."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def optional_size_arg(name: str, value, least: int = 1) -> int | None:
    """None, or ``value`` as :func:`size_arg` takes it."""
    return None if value is None else size_arg(name, value, least)


def number_arg(name: str, value) -> float:
    """``value`` as a finite float; refuses strings, bools, None, NaN and inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return v


def _bounded(name: str, value, ok, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and ok(v)):
        raise ConfigError(f"{name} must be a finite number {what}, got {value!r}")
    return v


def positive_arg(name: str, value) -> float:
    """``value`` as a finite float > 0."""
    return _bounded(name, value, lambda v: v > 0, "> 0")


def non_negative_arg(name: str, value) -> float:
    """``value`` as a finite float >= 0."""
    return _bounded(name, value, lambda v: v >= 0, ">= 0")


def fraction_arg(name: str, value) -> float:
    """``value`` as a float in [0, 1) (a momentum, a decay rate, a dropout ratio)."""
    v = number_arg(name, value)
    if not 0.0 <= v < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return v


def as_rng(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed (int >= 0), a Generator, or None (seed 0)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ConfigError(f"a random seed must be an integer >= 0, got {rng}; use e.g. seed=0")
        return np.random.default_rng(int(rng))
    raise ConfigError(f"rng must be an int seed >= 0 or a numpy.random.Generator, got {rng!r}")
