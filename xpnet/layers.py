"""Layers in the textbook's form: ``forward(x)``, ``backward(dout)``, ``params``, ``grads``.

Every layer is written once against the Array API: it takes the namespace from its input
and never asks which backend it runs on. Parameters and gradients are dicts keyed by
name (``params["W"]``, ``grads["W"]``); a layer always reads its parameters from
``self.params`` so an optimizer that replaces an array (jax, dask) is seen.

Random numbers (initial weights, dropout masks) are drawn on the host from a seeded
``numpy.random.Generator`` and moved to the device, so a seed gives the same numbers on
every backend.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .backend import Backend, from_host_like, host_dtype, namespace, resolve
from .errors import ConfigError, ShapeError


def as_rng(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed (int), a Generator, or None (seed 0)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(0 if rng is None else int(rng))
    raise ConfigError(f"rng must be an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def init_std(init, fan_in: int) -> float:
    """Standard deviation of initial weights: 'he' sqrt(2/n), 'xavier' sqrt(1/n), or a number."""
    if isinstance(init, str):
        key = init.lower()
        if key in ("he", "relu"):
            return math.sqrt(2.0 / fan_in)
        if key in ("xavier", "sigmoid", "tanh"):
            return math.sqrt(1.0 / fan_in)
        raise ConfigError(f"unknown initializer {init!r}; use 'he', 'xavier' or a standard deviation")
    std = float(init)
    if not std > 0 or not math.isfinite(std):
        raise ConfigError(f"initial weight std must be a positive number, got {init!r}")
    return std


class Layer:
    """Base: no parameters, nothing cached. Subclasses override ``forward``/``backward``."""

    params: dict
    grads: dict

    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, x, train: bool = True):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def backward_params(self, dout) -> None:
        """Fill ``grads`` only, for a first layer whose input needs no gradient.
        Layers that can skip the input gradient (Affine) override this."""
        self.backward(dout)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"

    def config(self) -> dict:
        """Constructor arguments other than arrays (saved in checkpoints)."""
        return {}


class Affine(Layer):
    """``out = x W + b``; backward ``dx = dout W^T``, ``dW = x^T dout``, ``db = sum(dout)``.

    N-D input (e.g. images N x C x H x W) is flattened to (N, -1) as in the textbook and
    ``dx`` is given back in the input's shape.
    """

    def __init__(self, W, b):
        super().__init__()
        if W.ndim != 2 or b.ndim != 1 or b.shape[0] != W.shape[1]:
            raise ShapeError(f"Affine needs W of shape (in, out) and b of shape (out,); "
                             f"got W {tuple(W.shape)}, b {tuple(b.shape)}")
        self.params = {"W": W, "b": b}
        self.x = None
        self.x_shape = None

    @classmethod
    def create(cls, in_size: int, out_size: int, init="he", rng=None, backend: Backend | str | None = None):
        """An Affine layer with Gaussian weights (std from ``init``) and zero bias."""
        be = backend if isinstance(backend, Backend) else resolve(backend)
        W = as_rng(rng).standard_normal((in_size, out_size)) * init_std(init, in_size)
        return cls(be.asarray(W), be.zeros((out_size,)))

    def forward(self, x, train: bool = True):
        W = self.params["W"]
        self.x_shape = x.shape
        if x.ndim < 2:
            raise ShapeError(f"Affine expects a batch of shape (N, {W.shape[0]}), got shape "
                             f"{tuple(x.shape)}; a single sample needs a leading batch axis of 1")
        if x.ndim != 2:
            x = namespace(x).reshape(x, (x.shape[0], -1))
        if x.shape[1] != W.shape[0]:
            raise ShapeError(f"Affine expects {W.shape[0]} input features per sample, got "
                             f"{x.shape[1]} (input shape {tuple(self.x_shape)})")
        self.x = x
        return x @ W + self.params["b"]

    def backward(self, dout):
        self.backward_params(dout)
        dx = dout @ self.params["W"].T
        return dx if len(self.x_shape) == 2 else namespace(dx).reshape(dx, self.x_shape)

    def backward_params(self, dout) -> None:
        self.grads["W"] = self.x.T @ dout
        self.grads["b"] = namespace(dout).sum(dout, axis=0)


class MatMul(Layer):
    """Computational-graph node ``out = x W``; backward ``dx = dout W^T``, ``dW = x^T dout``."""

    def __init__(self, W):
        super().__init__()
        self.params = {"W": W}
        self.x = None

    def forward(self, x, train: bool = True):
        self.x = x
        return x @ self.params["W"]

    def backward(self, dout):
        self.grads["W"] = self.x.T @ dout
        return dout @ self.params["W"].T


class Repeat(Layer):
    """Node that copies a (1, D) row ``n`` times along axis 0; backward sums the copies."""

    def __init__(self, n: int):
        super().__init__()
        self.n = int(n)

    def forward(self, x, train: bool = True):
        if x.shape[0] != 1:
            raise ShapeError(f"Repeat copies a single row: expected shape (1, ...), got {tuple(x.shape)}")
        return namespace(x).concat([x] * self.n, axis=0)

    def backward(self, dout):
        return namespace(dout).sum(dout, axis=0, keepdims=True)

    def config(self) -> dict:
        return {"n": self.n}


class Sum(Layer):
    """Node that sums N rows into one (1, D) row; backward copies ``dout`` back to N rows."""

    def __init__(self):
        super().__init__()
        self.n = None

    def forward(self, x, train: bool = True):
        self.n = x.shape[0]
        return namespace(x).sum(x, axis=0, keepdims=True)

    def backward(self, dout):
        return namespace(dout).concat([dout] * self.n, axis=0)


class ReLU(Layer):
    """``out = max(x, 0)``; backward passes ``dout`` where ``x > 0``, else 0."""

    def __init__(self):
        super().__init__()
        self.x = None

    def forward(self, x, train: bool = True):
        self.x, self.xp = x, namespace(x)
        return F.relu(x, xp=self.xp)

    def backward(self, dout):
        return self.xp.where(self.x > 0, dout, 0.0)


class Sigmoid(Layer):
    """``out = 1 / (1 + exp(-x))``; backward ``dout * out * (1 - out)``."""

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x, train: bool = True):
        self.out = F.sigmoid(x, xp=namespace(x))
        return self.out

    def backward(self, dout):
        return dout * self.out * (1.0 - self.out)


class Tanh(Layer):
    """``out = tanh(x)``; backward ``dout * (1 - out^2)``."""

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x, train: bool = True):
        self.out = namespace(x).tanh(x)
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out * self.out)


class Softmax(Layer):
    """``y = softmax(x)`` over the last axis; backward ``y * (dout - sum(dout * y))``."""

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x, train: bool = True):
        self.out = F.softmax(x, xp=namespace(x))
        return self.out

    def backward(self, dout):
        xp = namespace(dout)
        y = self.out
        return y * (dout - xp.sum(dout * y, axis=-1, keepdims=True))


class Dropout(Layer):
    """Training: ``x * mask`` with each unit kept with probability ``1 - ratio``.
    Evaluation: ``x * (1 - ratio)`` (the textbook's form). Backward: ``dout * mask``.

    The mask is drawn on the host from ``rng`` (seeded), so it is the same on every
    backend. ``freeze = True`` keeps reusing the last mask (used by gradient checks).
    """

    def __init__(self, ratio: float = 0.5, rng=None):
        super().__init__()
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"Dropout ratio must be in [0, 1), got {ratio}")
        self.ratio = float(ratio)
        self.rng = as_rng(rng)
        self.mask = None
        self.freeze = False

    def forward(self, x, train: bool = True):
        if not train:
            return x * (1.0 - self.ratio)
        if not (self.freeze and self.mask is not None and self.mask.shape == x.shape):
            self.mask = from_host_like(self.draw_mask(tuple(x.shape), host_dtype(x.dtype)), x)
        return x * self.mask

    def draw_mask(self, shape: tuple, dtype) -> np.ndarray:
        """The next mask from the layer's generator, on the host: 1 keeps a unit, 0 drops it."""
        return (self.rng.random(shape) >= self.ratio).astype(dtype)

    def backward(self, dout):
        return dout * self.mask

    def config(self) -> dict:
        return {"ratio": self.ratio}


class BatchNormalization(Layer):
    """Normalize each feature over the batch, then scale and shift: ``gamma * xhat + beta``.

    Training uses the batch's mean and variance and updates the running ones
    (``running = momentum * running + (1 - momentum) * batch``); evaluation uses the running
    ones. N-D input is flattened to (N, -1). Backward follows the textbook's graph.
    """

    def __init__(self, gamma, beta, momentum: float = 0.9, running_mean=None, running_var=None, eps: float = 1e-7):
        super().__init__()
        self.params = {"gamma": gamma, "beta": beta}
        self.momentum, self.eps = float(momentum), float(eps)
        xp = namespace(gamma)
        self.state = {
            "running_mean": running_mean if running_mean is not None else xp.zeros_like(gamma),
            "running_var": running_var if running_var is not None else xp.zeros_like(gamma),
        }
        self.xc = self.std = self.xn = self.x_shape = None

    @classmethod
    def create(cls, size: int, backend: Backend | str | None = None, momentum: float = 0.9):
        be = backend if isinstance(backend, Backend) else resolve(backend)
        return cls(be.asarray(np.ones(size)), be.zeros((size,)), momentum=momentum)

    def forward(self, x, train: bool = True):
        xp = namespace(x)
        self.x_shape = x.shape
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        if train:
            mu = xp.mean(x, axis=0)
            self.xc = x - mu
            var = xp.mean(self.xc * self.xc, axis=0)
            self.std = xp.sqrt(var + self.eps)
            self.xn = self.xc / self.std
            m = self.momentum
            self.state["running_mean"] = m * self.state["running_mean"] + (1.0 - m) * mu
            self.state["running_var"] = m * self.state["running_var"] + (1.0 - m) * var
            xn = self.xn
        else:
            xn = (x - self.state["running_mean"]) / xp.sqrt(self.state["running_var"] + self.eps)
        out = self.params["gamma"] * xn + self.params["beta"]
        return xp.reshape(out, self.x_shape) if len(self.x_shape) != 2 else out

    def backward(self, dout):
        xp = namespace(dout)
        if dout.ndim != 2:
            dout = xp.reshape(dout, (dout.shape[0], -1))
        n = dout.shape[0]
        self.grads["beta"] = xp.sum(dout, axis=0)
        self.grads["gamma"] = xp.sum(self.xn * dout, axis=0)
        dxn = self.params["gamma"] * dout
        dxc = dxn / self.std
        dstd = -xp.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc = dxc + (2.0 / n) * self.xc * dvar
        dmu = xp.sum(dxc, axis=0)
        dx = dxc - dmu / n
        return xp.reshape(dx, self.x_shape) if len(self.x_shape) != 2 else dx

    def config(self) -> dict:
        return {"momentum": self.momentum, "eps": self.eps}


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
