"""The command line's argument types: each reads a flag's text and checks the value with the
rule in :mod:`xpnet.checks`, so that a flag and the library argument behind it take the same
values; argparse reports the sentence with the flag's name (``--epochs: expected ...``)."""

from __future__ import annotations

import argparse
import os

from ..checks import non_negative_arg, positive_arg, seed_arg, size_arg
from ..errors import ConfigError


def _argument(text: str, parse, check, unreadable: str, refused: str | None = None):
    """``check(parse(text))``; "``unreadable`` 'text'" when ``parse`` cannot read the text, and
    "``refused`` 'text'" (default: the same words) when ``check`` refuses the value."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{unreadable} {text!r}") from None
    try:
        return check(value)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{refused or unreadable} {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (epochs, batch size, patience, a count)."""
    return _argument(text, int, lambda v: size_arg("value", v), "expected a positive integer, got")


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate)."""
    return _argument(text, float, lambda v: positive_arg("value", v), "expected a positive number, got",
                     "expected a finite positive number, got")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a weight decay)."""
    return _argument(text, float, lambda v: non_negative_arg("value", v), "expected a number >= 0, got",
                     "expected a finite number >= 0, got")


def seed(text: str) -> int:
    """A random seed, 0 to 2**63-1."""
    return _argument(text, int, lambda v: seed_arg("seed", v), "expected a whole number from 0 to 2**63-1, got",
                     "the seed must be from 0 to 2**63-1 (random generators take no negative seeds), got")


def _sizes(values: list[int]) -> list[int]:
    if not values:
        raise ConfigError("no sizes given")
    return [size_arg("a hidden layer size", v) for v in values]


def hidden_sizes(text: str) -> list[int]:
    """Hidden layer sizes: ``256``, ``128,64`` or ``128 64``."""
    return _argument(text, lambda t: [int(s) for s in t.replace(",", " ").split()], _sizes,
                     "hidden layer sizes must be integers like 256 or 128,64; got",
                     "hidden layer sizes must be positive integers; got")


def folder(text: str) -> str:
    """A folder path, which may not exist yet; a file is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; expected a folder (it may not exist yet)")
    return text
