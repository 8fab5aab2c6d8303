"""The book's ``common/layers.py`` on xpnet's layers (:mod:`xpnet.layers`, :mod:`xpnet.losses`).

Each class has the book's constructor arguments, attribute names (``W``, ``b``, ``dW``, ``db``,
``original_x_shape``, ``mask``, ``gamma``, ``dgamma``, ``running_mean``...) and call forms
(``forward(x)``, ``forward(x, train_flg=True)``, ``backward(dout=1)``), and runs the xpnet
layer it holds in ``self.layer``: the maths is xpnet's.

A layer keeps the parameter arrays it is given (``Affine(params['W1'], params['b1'])``) and reads
them again at every forward, so ``params['W1'] -= lr * grads['W1']`` reaches it on every backend:
in place on NumPy, torch and CuPy, through the :mod:`xpnet.dlfs1.np` box on jax, dask and
array_api_strict. There a parameter must be such a box (made by ``np.random.randn``, ``np.zeros``,
``np.asarray(w)``...): a bare array would be rebound by ``-=`` and the layer would keep reading
the old one, so it is refused.

``Convolution`` and ``Pooling`` (and ``util.im2col`` / ``col2im``) come from :mod:`xpnet.conv`
when this xpnet has it; otherwise constructing them says so.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy

from .. import functional as F
from .. import layers as L
from .. import losses
from ..backend import library_of, resolve
from ..errors import BackendMismatchError, ConfigError
from .arrays import _wrap
from .box import ndarray, raw
from .np import random

# the convolution layers, when this xpnet has them (an error inside xpnet.conv is raised as it is)
_conv = importlib.import_module("xpnet.conv") if importlib.util.find_spec("xpnet.conv") else None


def held(a, what: str):
    """``a`` if a layer can keep it as a parameter that the book's in-place updates reach."""
    be = resolve()
    if type(a) is ndarray:
        return a
    if not be.writes_in_place:
        raise BackendMismatchError(
            f"{what} is a {type(a).__name__}; on backend {be.name!r} a parameter must be an array made by "
            f"xpnet.dlfs1.np (np.random.randn(...), np.zeros(...), or np.asarray(w) for one you have), "
            f"so that the book's `params[key] -= ...` reaches the layer (a bare {be.name} array cannot "
            f"change in place: the layer would keep the old one)")
    if not hasattr(a, "shape") or library_of(a).name != be.name:
        raise BackendMismatchError(f"{what} is a {type(a).__name__}, not a {be.name} array: the layer would "
                                   f"train a copy. Make it with xpnet.dlfs1.np (e.g. np.asarray(w))")
    return a


class _Book:
    """Runs ``self.layer`` (an xpnet layer) on the backend's arrays; ``weights`` maps the book's
    attribute names to the xpnet layer's parameter names, ``grad_names`` to the book's gradients."""

    weights: dict = {}
    grad_names: dict = {}

    def _sync(self, be) -> None:
        for attr, name in self.weights.items():
            self.layer.params[name] = raw(getattr(self, attr), be)

    def _forward(self, x, **kw):
        be = resolve()
        self._sync(be)
        return _wrap(self.layer.forward(raw(x, be), **kw), be)

    def backward(self, dout=1):
        be = resolve()
        dx = self.layer.backward(raw(dout, be))
        for attr, name in self.grad_names.items():
            setattr(self, attr, _wrap(self.layer.grads[name], be))
        return _wrap(dx, be)

    def _cache(self, value):
        return None if value is None else _wrap(value, resolve())


class Relu(_Book):
    def __init__(self):
        self.layer = L.ReLU()

    def forward(self, x):
        return self._forward(x)

    @property
    def mask(self):
        """Where the input was <= 0 (the units backward stops)."""
        return None if self.layer.x is None else self._cache(self.layer.x <= 0)


class Sigmoid(_Book):
    def __init__(self):
        self.layer = L.Sigmoid()

    def forward(self, x):
        return self._forward(x)

    @property
    def out(self):
        return self._cache(self.layer.out)


class Affine(_Book):
    """``out = x W + b`` (N-D input flattened to (N, -1)); backward sets ``dW`` and ``db``."""

    weights = {"W": "W", "b": "b"}
    grad_names = {"dW": "W", "db": "b"}

    def __init__(self, W, b):
        self.W, self.b = held(W, "Affine W"), held(b, "Affine b")
        self.layer = L.Affine(raw(W), raw(b))
        self.dW = self.db = None

    def forward(self, x):
        return self._forward(x)

    @property
    def x(self):
        return self._cache(self.layer.x)

    @property
    def original_x_shape(self):
        return None if self.layer.x_shape is None else tuple(self.layer.x_shape)


class SoftmaxWithLoss(_Book):
    """Softmax then cross-entropy; ``t`` one-hot rows or integer labels. ``forward`` gives the
    mean loss as a Python float (one read from the device); ``backward(dout=1)`` gives
    ``(y - t) / N``."""

    def __init__(self):
        self.layer = losses.SoftmaxWithLoss()
        self.loss = self.t = None

    def forward(self, x, t):
        be = resolve()
        self.t = t
        a = raw(x, be)
        check = None
        if isinstance(t, numpy.ndarray) and a.ndim == 2:  # host labels: checked on the host, no device sync
            F.check_labels(t, a.shape[1], a.shape[0], where="SoftmaxWithLoss labels")
            check = False
        self.loss = float(self.layer.forward(a, raw(t, be), check=check))
        return self.loss

    @property
    def y(self):
        return self._cache(self.layer.y)


class Dropout(_Book):
    """The book's Dropout: training keeps a unit where a uniform draw exceeds ``dropout_ratio``
    (drawn from ``np.random``, so ``np.random.seed`` fixes it on every backend); evaluation
    scales by ``1 - dropout_ratio``."""

    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.layer = _BookDropout(dropout_ratio)

    def forward(self, x, train_flg=True):
        return self._forward(x, train=bool(train_flg))

    @property
    def mask(self):
        return None if self.layer.mask is None else self._cache(self.layer.mask > 0)


class _BookDropout(L.Dropout):
    def draw_mask(self, shape, dtype):
        return (random.state.rand(*shape) > self.ratio).astype(dtype)


class BatchNormalization(_Book):
    """The book's BatchNormalization (eps 1e-6; running mean and variance start at 0 unless
    given); backward sets ``dgamma`` and ``dbeta``. 4-D input is normalised per (C*H*W) feature."""

    weights = {"gamma": "gamma", "beta": "beta"}
    grad_names = {"dgamma": "gamma", "dbeta": "beta"}

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta = held(gamma, "BatchNormalization gamma"), held(beta, "BatchNormalization beta")
        g = raw(gamma)
        xp = resolve().xp
        mean = xp.zeros_like(g) if running_mean is None else raw(running_mean)
        var = xp.zeros_like(g) if running_var is None else raw(running_var)
        self.layer = L.BatchNormalization(g, raw(beta), momentum, mean, var, eps=10e-7)
        self.momentum = momentum
        self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        return self._forward(x, train=bool(train_flg))

    @property
    def input_shape(self):
        return None if self.layer.x_shape is None else tuple(self.layer.x_shape)

    @property
    def running_mean(self):
        return self._cache(self.layer.state["running_mean"])

    @property
    def running_var(self):
        return self._cache(self.layer.state["running_var"])

    @property
    def xc(self):
        return self._cache(self.layer.xc)

    @property
    def xn(self):
        return self._cache(self.layer.xn)

    @property
    def std(self):
        return self._cache(self.layer.std)


def _need_conv(name: str) -> None:
    if _conv is None:
        raise ConfigError(f"{name} needs xpnet.conv (the convolution layers), which this xpnet does not have "
                          f"yet; the fully connected layers (Affine, Relu, ...) work")


class Convolution(_Book):
    """The book's Convolution(W, b, stride=1, pad=0), running ``xpnet.conv.Convolution``. After
    ``forward`` it has the book's ``x``, ``col`` (the windows as rows, (N*OH*OW, C*FH*FW)) and
    ``col_W`` ((C*FH*FW, FN)); after ``backward``, ``dW`` and ``db``."""

    weights = {"W": "W", "b": "b"}
    grad_names = {"dW": "W", "db": "b"}

    def __init__(self, W, b, stride=1, pad=0):
        _need_conv("Convolution")
        self.W, self.b = held(W, "Convolution W"), held(b, "Convolution b")
        self.stride, self.pad = stride, pad
        self.layer = _conv.Convolution(raw(W), raw(b), stride=stride, pad=pad)
        self.x = self.dW = self.db = None

    def forward(self, x):
        self.x = self._cache(raw(x, resolve()))
        return self._forward(self.x)

    @property
    def col(self):
        c = self.layer.col  # xpnet keeps (N, C*FH*FW, OH*OW): the book's rows, image by image
        if c is None:
            return None
        xp = resolve().xp
        return self._cache(xp.reshape(xp.permute_dims(c, (0, 2, 1)), (-1, c.shape[1])))

    @property
    def col_W(self):  # noqa: N802 (the book's name)
        return None if self.layer.col_W is None else self._cache(resolve().xp.permute_dims(self.layer.col_W, (1, 0)))


class Pooling(_Book):
    """The book's Pooling(pool_h, pool_w, stride=1, pad=0) (max pooling), running
    ``xpnet.conv.Pooling``. After ``forward`` it has the book's ``x`` and ``arg_max`` (the
    position of each window's maximum, one per output value in (N, OH, OW, C) order)."""

    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        _need_conv("Pooling")
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad
        self.layer = _conv.Pooling(pool_h, pool_w, stride=stride, pad=pad)
        self.x = None

    def forward(self, x):
        self.x = self._cache(raw(x, resolve()))
        return self._forward(self.x)

    @property
    def arg_max(self):
        a = self.layer.arg_max  # xpnet keeps (N, C, OH, OW)
        if a is None:
            return None
        xp = resolve().xp
        return self._cache(xp.reshape(xp.permute_dims(a, (0, 2, 3, 1)), (-1,)))
