"""The book's ``common/gradient.py``: central differences, written as the book writes them
(perturb one element in place, evaluate, restore), on :mod:`xpnet.dlfs1.np` arrays.

On jax, dask and array_api_strict ``x`` must be an :mod:`xpnet.dlfs1.np` array (a box), whose
``x[idx] = v`` the function ``f`` then sees; an xpnet error says so for a bare array. Use
float64 (``XPNET_DTYPE=float64``) as the book does: with float32, ``h = 1e-4`` leaves only about
three correct digits.
"""

from __future__ import annotations

import numpy as _host

from . import np
from .layers import held


def numerical_diff(f, x, h=1e-4):
    """``(f(x + h) - f(x - h)) / 2h`` for a number ``x``."""
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(f, x, h=1e-4):
    """The gradient of ``f()`` (a number) with respect to every element of ``x``, in ``x``'s shape.

    ``x`` is changed in place one element at a time and restored, so ``f`` may ignore its argument
    and read ``x`` through the network (``lambda W: net.loss(x, t)``)."""
    held(x, "numerical_gradient's x")
    grad = _host.zeros(x.shape)
    values = np.asnumpy(x)  # read once on the host (one sync, not one per element)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        idx = it.multi_index
        tmp_val = float(values[idx])
        x[idx] = tmp_val + h
        fxh1 = float(f(x))
        x[idx] = tmp_val - h
        fxh2 = float(f(x))
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val
        it.iternext()
    return np.asarray(grad, dtype=x.dtype)


def _numerical_gradient_1d(f, x, h=1e-4):
    """The gradient of ``f`` at a 1-D ``x`` (``f`` is called with ``x`` perturbed in place)."""
    return numerical_gradient(f, x, h)


def numerical_gradient_2d(f, X, h=1e-4):
    """Row by row: the gradient of ``f`` at each row of ``X`` (a 1-D ``X``: its gradient)."""
    if X.ndim == 1:
        return _numerical_gradient_1d(f, X, h)
    grad = np.zeros_like(X)
    for idx in range(X.shape[0]):
        row = X[idx]
        grad[idx] = _numerical_gradient_1d(f, row, h)
    return grad
