"""The second book's ``common.functions`` on :mod:`xpnet.functional`: results on the chosen
backend (in the books' NumPy boxes on jax and dask), any of its arrays or host data in."""

from __future__ import annotations

from .. import functional as F
from ..backend import namespace
from .arrays import out, raw

__all__ = ["cross_entropy_error", "relu", "sigmoid", "softmax"]


def sigmoid(x):
    """``1 / (1 + exp(-x))``, without overflow for any finite x."""
    return out(F.sigmoid(raw(x)))


def relu(x):
    """``max(0, x)``."""
    return out(F.relu(raw(x)))


def softmax(x):
    """Softmax over the last axis (a row of a batch, or the whole of one vector)."""
    return out(F.softmax(raw(x)))


def cross_entropy_error(y, t):
    """``-sum(log(y[n, t_n] + 1e-7)) / N`` for probabilities ``y`` (N, C) or (C,) and labels
    ``t`` (N,) or one-hot rows of ``y``'s shape, as in the book."""
    y, t = raw(y), raw(t)
    xp = namespace(y)
    if y.ndim == 1:  # one sample: a label, or a one-hot row
        y, t = xp.reshape(y, (1, -1)), xp.reshape(t, (1, -1))
    if t.ndim == 2:
        t = xp.argmax(t, axis=1) if t.shape == y.shape else xp.reshape(t, (-1,))
    F.check_labels(t, y.shape[1], y.shape[0], where="cross_entropy_error labels", xp=xp)
    T = F.targets_as_probabilities(t, y.shape[1], y.dtype, xp=xp)
    return out(-xp.sum(T * xp.log(y + 1e-7)) / y.shape[0])
