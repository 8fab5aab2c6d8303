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
import os
import weakref

import numpy as np

from . import functional as F
from .backend import Backend, check_same_backend, dtype_name, from_host_like, host_dtype, namespace, resolve
from .checks import as_rng, is_array, number_arg, size_arg  # noqa: F401 (as_rng, size_arg: part of this module's API)
from .errors import BackendMismatchError, CallOrderError, ConfigError, DTypeError, ShapeError


def check_param(a, name: str, like=None):
    """Raise a clear error unless ``a`` can be a layer's parameter: a floating-point array that
    tracks no autograd graph, on ``like``'s library, device and dtype when ``like`` is given."""
    if not is_array(a):
        raise BackendMismatchError(f"{name} must be an array (e.g. xpnet.get_backend().asarray(w)), "
                                   f"got {type(a).__name__}")
    if getattr(a, "requires_grad", False):
        raise BackendMismatchError(f"{name} tracks gradients (requires_grad=True): xpnet computes its "
                                   f"own gradients and autograd would record every step; pass "
                                   f"{name}.detach()")
    if not namespace(a).isdtype(a.dtype, "real floating"):
        raise DTypeError(f"{name} must be floating-point, got dtype {dtype_name(a.dtype)}; an integer "
                         f"weight would turn the layer's output into integers. Convert it with "
                         f"xp.astype({name}, xp.float32)")
    if like is not None:
        check_same_backend(a, like, name)
        if a.dtype != like.dtype:
            raise DTypeError(f"{name} has dtype {dtype_name(a.dtype)} but the layer's other parameters "
                             f"have {dtype_name(like.dtype)}; give them one dtype")
    return a


def check_fits(nbytes: int, what: str) -> None:
    """Raise :class:`ConfigError` when ``nbytes`` exceed this machine's physical memory (so a
    typo such as a hidden size of 10**9 fails at once, not in the allocator or the swap)."""
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): let the allocator say
        return
    if nbytes > have:
        raise ConfigError(f"{what} needs about {nbytes / 1e9:.3g} GB ({nbytes} bytes) for its weights, "
                          f"more than this machine's {have / 1e9:.3g} GB of memory; use smaller layers")


def init_std(init, fan_in: int) -> float:
    """Standard deviation of initial weights: 'he' sqrt(2/n), 'xavier' sqrt(1/n), or a number."""
    if isinstance(init, str):
        key = init.lower()
        if key in ("he", "relu"):
            return math.sqrt(2.0 / fan_in)
        if key in ("xavier", "sigmoid", "tanh"):
            return math.sqrt(1.0 / fan_in)
        raise ConfigError(f"unknown initializer {init!r}; use 'he', 'xavier' or a standard deviation")
    std = number_arg("initial weight std (init)", init)
    if not std > 0:
        raise ConfigError(f"initial weight std must be a positive number, got {init!r}")
    return std


# every layer alive: where an optimizer finds the layers that hold an array it must replace
# (see Optimizer.update: jax and dask arrays cannot change in place)
LIVE_LAYERS: weakref.WeakSet = weakref.WeakSet()


class Layer:
    """Base: no parameters, nothing cached. Subclasses override ``forward``/``backward``."""

    params: dict
    grads: dict

    def __init__(self):
        self.params, self.grads = {}, {}
        LIVE_LAYERS.add(self)

    def forward(self, x, train: bool = True):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def backward_params(self, dout) -> None:
        """Fill ``grads`` only, for a first layer whose input needs no gradient.
        Layers that can skip the input gradient (Affine) override this."""
        self.backward(dout)

    def _cached(self, value):
        """``value`` saved by ``forward``, or a clear error when there was no forward yet."""
        if value is None:
            raise CallOrderError(f"{type(self).__name__}.backward() called before forward(x); "
                                 f"run the forward pass first")
        return value

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
        check_param(W, "Affine W")
        check_param(b, "Affine b", like=W)
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
        in_size, out_size = size_arg("Affine in_size", in_size), size_arg("Affine out_size", out_size)
        check_fits(in_size * out_size * (8 + host_dtype(be.dtype).itemsize), f"Affine({in_size}, {out_size})")
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
        self.grads["W"] = self._cached(self.x).T @ dout
        self.grads["b"] = namespace(dout).sum(dout, axis=0)


class MatMul(Layer):
    """Computational-graph node ``out = x W``; backward ``dx = dout W^T``, ``dW = x^T dout``."""

    def __init__(self, W):
        super().__init__()
        if check_param(W, "MatMul W").ndim != 2:
            raise ShapeError(f"MatMul needs W of shape (in, out), got {tuple(W.shape)}")
        self.params = {"W": W}
        self.x = None

    def forward(self, x, train: bool = True):
        self.x = x
        return x @ self.params["W"]

    def backward(self, dout):
        self.grads["W"] = self._cached(self.x).T @ dout
        return dout @ self.params["W"].T


class Repeat(Layer):
    """Node that copies a (1, D) row ``n`` times along axis 0; backward sums the copies."""

    def __init__(self, n: int):
        super().__init__()
        self.n = size_arg("Repeat n", n)

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
        return namespace(dout).concat([dout] * self._cached(self.n), axis=0)


class ReLU(Layer):
    """``out = max(x, 0)``; backward passes ``dout`` where ``x > 0``, else 0."""

    def __init__(self):
        super().__init__()
        self.x = self.xp = None

    def forward(self, x, train: bool = True):
        self.x, self.xp = x, namespace(x)
        return F.relu(x, xp=self.xp)

    def backward(self, dout):
        x = self._cached(self.x)  # dout times a 0/1 mask: about 10x faster than where() on NumPy
        return dout * self.xp.astype(x > 0, dout.dtype)


class Sigmoid(Layer):
    """``out = 1 / (1 + exp(-x))``; backward ``dout * out * (1 - out)``."""

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x, train: bool = True):
        self.out = F.sigmoid(x, xp=namespace(x))
        return self.out

    def backward(self, dout):
        out = self._cached(self.out)
        return dout * out * (1.0 - out)


class Tanh(Layer):
    """``out = tanh(x)``; backward ``dout * (1 - out^2)``."""

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x, train: bool = True):
        self.out = namespace(x).tanh(x)
        return self.out

    def backward(self, dout):
        out = self._cached(self.out)
        return dout * (1.0 - out * out)


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
        y = self._cached(self.out)
        return y * (dout - xp.sum(dout * y, axis=-1, keepdims=True))


class Dropout(Layer):
    """Training: ``x * mask`` with each unit kept with probability ``1 - ratio``.
    Evaluation: ``x * (1 - ratio)`` (the textbook's form). Backward: ``dout * mask``.

    The mask is drawn on the host from ``rng`` (seeded), so it is the same on every
    backend. ``freeze = True`` keeps reusing the last mask (used by gradient checks).
    """

    def __init__(self, ratio: float = 0.5, rng=None):
        super().__init__()
        ratio = number_arg("Dropout ratio", ratio)
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"Dropout ratio must be in [0, 1), got {ratio}")
        self.ratio = ratio
        self.rng = as_rng(rng)
        self.mask = None
        self.freeze = False
        self.rows = None  # (lo, hi, total): draw a mask for ``total`` rows and keep rows lo:hi

    def forward(self, x, train: bool = True):
        if not train:
            return x * (1.0 - self.ratio)
        if not (self.freeze and self.mask is not None and self.mask.shape == x.shape):
            self.mask = from_host_like(self.draw_mask(tuple(x.shape), host_dtype(x.dtype)), x)
        return x * self.mask

    def draw_mask(self, shape: tuple, dtype) -> np.ndarray:
        """The next mask from the layer's generator, on the host: 1 keeps a unit, 0 drops it.

        With ``rows = (lo, hi, total)`` (set by data-parallel training, where this process holds
        rows lo:hi of a global batch of ``total``) the mask of the whole batch is drawn and its
        rows lo:hi kept: the ranks' masks are then the rows of the one mask a single process
        draws, and every rank's generator stays at the same point."""
        if self.rows is None:
            return (self.rng.random(shape) >= self.ratio).astype(dtype)
        lo, hi, total = self.rows
        if shape[0] != hi - lo:
            raise ShapeError(f"Dropout was told it holds rows {lo}:{hi} of a batch of {total}, but its input "
                             f"has {shape[0]} rows")
        return (self.rng.random((total, *shape[1:]))[lo:hi] >= self.ratio).astype(dtype)

    def backward(self, dout):
        return dout * self._cached(self.mask)

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
        check_param(gamma, "BatchNormalization gamma")
        if gamma.ndim != 1:
            raise ShapeError(f"BatchNormalization needs 1-D gamma (features,), got {tuple(gamma.shape)}")
        xp = namespace(gamma)
        # the running variance starts at 1 (as in PyTorch and Keras): untrained, evaluation
        # mode passes the input through
        state = {"running_mean": xp.zeros_like(gamma) if running_mean is None else running_mean,
                 "running_var": xp.ones_like(gamma) if running_var is None else running_var}
        for name, a in (("beta", beta), *state.items()):
            check_param(a, f"BatchNormalization {name}", like=gamma)
            if tuple(a.shape) != tuple(gamma.shape):
                raise ShapeError(f"BatchNormalization {name} has shape {tuple(a.shape)}; gamma has "
                                 f"{tuple(gamma.shape)}")
        self.momentum, self.eps = number_arg("momentum", momentum), number_arg("eps", eps)
        if not (0.0 <= self.momentum < 1.0 and self.eps > 0):
            raise ConfigError(f"BatchNormalization needs momentum in [0, 1) and eps > 0, got "
                              f"momentum={momentum!r}, eps={eps!r}")
        self.params = {"gamma": gamma, "beta": beta}
        self.state = state
        self.xc = self.std = self.xn = self.x_shape = None

    @classmethod
    def create(cls, size: int, backend: Backend | str | None = None, momentum: float = 0.9):
        be = backend if isinstance(backend, Backend) else resolve(backend)
        size = size_arg("BatchNormalization size", size)
        return cls(be.asarray(np.ones(size)), be.zeros((size,)), momentum=momentum)

    def forward(self, x, train: bool = True):
        xp = namespace(x)
        self.x_shape = x.shape
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        if x.shape[1] != self.params["gamma"].shape[0]:
            raise ShapeError(f"BatchNormalization expects {self.params['gamma'].shape[0]} features per "
                             f"sample, got {x.shape[1]} (input shape {tuple(self.x_shape)})")
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
        self.grads["gamma"] = xp.sum(self._cached(self.xn) * dout, axis=0)
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
