"""Argument checks, once: each turns a value into what the caller needs or raises a
:class:`~xpnet.errors.ConfigError` that names the argument, what it got and what it takes.

Library functions call these; the command line's argument types (``xpnet.cli.argtypes``) wrap them.
The ``is_*`` predicates hold the rules for callers that word their own error (a seed in a
checkpoint's meta, the number of classes of a one-hot).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import ConfigError


def is_int(value, least: int | None = None) -> bool:
    """Whether ``value`` is an integer, Python's or NumPy's (a bool is not one), and >= ``least``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return False
    return least is None or value >= least


def is_real(value) -> bool:
    """Whether ``value`` is a real number, Python's or NumPy's (a bool is not one), NaN and inf included."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)


def is_number(value) -> bool:
    """Whether ``value`` is a finite real number (see :func:`is_real`) that a float holds."""
    try:
        return is_real(value) and math.isfinite(float(value))
    except OverflowError:  # an int beyond float's range
        return False


def is_array(value) -> bool:
    """Whether ``value`` is an array of some array library (it has a shape, a dtype and ndim);
    a Python list or scalar is not."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "ndim")


def size_arg(name: str, value, least: int = 1) -> int:
    """``value`` as an int >= ``least``; refuses floats (4.9), bools and strings."""
    if not is_int(value, least):
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def optional_size_arg(name: str, value, least: int = 1) -> int | None:
    """None, or ``value`` as :func:`size_arg` takes it."""
    return None if value is None else size_arg(name, value, least)


def number_arg(name: str, value) -> float:
    """``value`` as a finite float; refuses strings, bools, None, NaN and inf."""
    if not is_real(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return v


def positive_arg(name: str, value) -> float:
    """``value`` as a finite float > 0 (NaN and inf are refused with the range, not as non-numbers)."""
    if not is_real(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def non_negative_arg(name: str, value) -> float:
    """``value`` as a finite float >= 0."""
    v = number_arg(name, value)
    if not v >= 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def fraction_arg(name: str, value) -> float:
    """``value`` as a float in [0, 1) (a momentum, a decay rate, a dropout ratio)."""
    v = number_arg(name, value)
    if not 0.0 <= v < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return v


SEED_LIMIT = 2**63  # numpy.random.default_rng takes seeds from 0 up; a checkpoint keeps them as int64


def seed_arg(name: str, value) -> int:
    """``value`` as a random seed: an integer from 0 to 2**63-1."""
    if not is_int(value, 0) or value >= SEED_LIMIT:
        raise ConfigError(f"{name} must be an integer from 0 to 2**63-1, got {value!r}")
    return int(value)


def as_rng(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed (int >= 0), a Generator, or None (seed 0)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if is_int(rng):
        if rng < 0:
            raise ConfigError(f"a random seed must be an integer >= 0, got {rng}; use e.g. seed=0")
        return np.random.default_rng(int(rng))
    raise ConfigError(f"rng must be an int seed >= 0 or a numpy.random.Generator, got {rng!r}")
