"""The book's ``common/functions.py`` on xpnet's functions (:mod:`xpnet.functional`).

Inputs are arrays of the chosen backend, :mod:`xpnet.dlfs1.np` boxes, or host data; results are
what :mod:`xpnet.dlfs1.np` gives on that backend (boxes on jax, dask and array_api_strict).
"""

from __future__ import annotations

from .. import functional as F
from ..backend import resolve
from ..errors import ShapeError
from .arrays import _wrap
from .box import raw


def _in(x):
    be = resolve()
    return be, raw(x, be)


def identity_function(x):
    return x


def step_function(x):
    """1 where ``x > 0``, else 0 (integers, as the book's ``np.array(x > 0, dtype=int)``)."""
    be, a = _in(x)
    return _wrap(be.xp.astype(a > 0, be.xp.__array_namespace_info__().default_dtypes(device=be.device)["integral"]), be)


def sigmoid(x):
    be, a = _in(x)
    return _wrap(F.sigmoid(a, xp=be.xp), be)


def sigmoid_grad(x):
    """``(1 - sigmoid(x)) * sigmoid(x)``."""
    be, a = _in(x)
    s = F.sigmoid(a, xp=be.xp)
    return _wrap((1.0 - s) * s, be)


def relu(x):
    be, a = _in(x)
    return _wrap(F.relu(a, xp=be.xp), be)


def relu_grad(x):
    """1 where ``x >= 0``, else 0 (the book's form)."""
    be, a = _in(x)
    return _wrap(be.xp.astype(a >= 0, a.dtype), be)


def softmax(x):
    """Softmax over the last axis (each row of a batch), stable for any finite scores."""
    be, a = _in(x)
    return _wrap(F.softmax(a, axis=-1, xp=be.xp), be)


def mean_squared_error(y, t):
    """``0.5 * sum((y - t)^2)`` (summed over the batch, as in the book)."""
    be, a = _in(y)
    b = raw(t, be)
    d = a - (be.xp.astype(b, a.dtype) if b.dtype != a.dtype else b)
    return _wrap(0.5 * be.xp.sum(d * d), be)


def cross_entropy_error(y, t):
    """``-sum(t * log(y + 1e-7)) / N`` for probabilities ``y`` (N, C) or (C,), and targets ``t``
    as one-hot rows or integer labels (the book's two forms)."""
    be, a = _in(y)
    xp = be.xp
    b = raw(t, be)
    if a.ndim == 1:
        a = xp.reshape(a, (1, -1))
        size = 1 if b.ndim == 0 else b.shape[0] if b.ndim == 1 else -1
        b = xp.reshape(b, (1, -1) if size == a.shape[1] else (-1,))  # one-hot row, or one label
    if a.ndim != 2:
        raise ShapeError(f"cross_entropy_error expects probabilities of shape (N, C) or (C,), got {tuple(a.shape)}")
    T = F.targets_as_probabilities(b, a.shape[1], a.dtype, xp=xp) if b.ndim == 1 else xp.astype(b, a.dtype)
    if tuple(T.shape) != tuple(a.shape):
        raise ShapeError(f"cross_entropy_error: targets of shape {tuple(b.shape)} do not fit probabilities of "
                         f"shape {tuple(a.shape)}; give one-hot rows of that shape or one label per row")
    return _wrap(-xp.sum(T * xp.log(a + 1e-7)) / a.shape[0], be)


def softmax_loss(X, t):
    """``cross_entropy_error(softmax(X), t)``."""
    return cross_entropy_error(softmax(X), t)
