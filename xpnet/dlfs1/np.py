"""The books' NumPy on the backend that ``XPNET_BACKEND`` chooses: ``from xpnet.dlfs1 import np``.

It offers what the books' ``common``, ``dataset`` and chapter code call (``zeros``, ``dot``,
``argmax``, ``exp``, ``random.randn``, ``add.at``, ...). The backend is asked at each call
(:func:`xpnet.backend.resolve`: ``use_backend`` blocks, ``set_backend``, ``XPNET_BACKEND``,
``XPNET_DTYPE``, else NumPy in float32), so results land on the chosen backend's device.

- NumPy, torch, CuPy: results are the library's own arrays, which change in place as the books
  expect (on NumPy itself they are plain ``numpy.ndarray``).
- jax, dask, array_api_strict: results are :class:`ndarray` boxes (``.data`` holds the backend's
  array): ``-=`` / ``x[...] = v`` replace the box's contents, so a layer holding the box sees
  every update (see :mod:`xpnet.dlfs1.box`).
- Float data are made in the backend's float dtype (``XPNET_DTYPE``, float32 unless chosen
  otherwise; the books' NumPy gives float64): ``XPNET_DTYPE=float64`` gives the books' numbers.
- Random numbers are drawn on the host from one ``numpy.random.RandomState`` and moved to the
  device: ``np.random.seed(0)`` gives the same network on every backend (and, in float64, the
  same numbers as the books' NumPy). Integer draws (``choice``, ``permutation(n)``, ``randint``)
  stay on the host, as indices into host data.
"""

from __future__ import annotations

import math

import numpy as _np

from ..backend import from_host_like, library_of, materialize, resolve, to_numpy
from .arrays import (  # noqa: F401 (the shape functions are np's)
    _axis,
    _boxing,
    _default_int,
    _dtype,
    _floating,
    _kind,
    _wrap,
    asnumpy,
    broadcast_to,
    concatenate,
    expand_dims,
    hstack,
    numpy_own,
    pad,
    ravel,
    repeat,
    reshape,
    squeeze,
    stack,
    swapaxes,
    take,
    tile,
    transpose,
    vstack,
)
from .box import _SCALARS, common, ndarray, raw

newaxis = None
pi, e, inf, nan = math.pi, math.e, math.inf, math.nan
float16, float32, float64 = _np.float16, _np.float32, _np.float64
int8, int16, int32, int64, uint8 = _np.int8, _np.int16, _np.int32, _np.int64, _np.uint8
bool_ = _np.bool_
__all__ = ["ndarray", "random", "add", "asnumpy", "newaxis", "float32", "float64", "int32", "int64"]


# --------------------------------------------------------------------------- creation
def array(a, dtype=None, copy=True):
    be = resolve()
    if type(a) is ndarray or library_of(a).name == be.name:
        x = raw(a, be)
        x = be.xp.asarray(x, copy=True) if copy else x
        return _wrap(be.xp.astype(x, _dtype(dtype, be)) if dtype is not None else x, be)
    if isinstance(a, (list, tuple)) and any(type(v) is ndarray for v in a):
        return stack(a)
    return _wrap(be.asarray(_np.asarray(a), _dtype(dtype, be)), be)


def asarray(a, dtype=None):
    if type(a) is ndarray and dtype is None:
        return a
    return array(a, dtype, copy=False)


def _host_made(host, dtype):
    be = resolve()
    return _wrap(be.asarray(host, _dtype(dtype, be)), be)


def zeros(shape, dtype=None):
    return _host_made(_np.zeros(shape), dtype)


def ones(shape, dtype=None):
    return _host_made(_np.ones(shape), dtype)


def empty(shape, dtype=None):
    """Zeros: the backends have no uninitialised memory to hand out portably."""
    return zeros(shape, dtype)


def full(shape, fill_value, dtype=None):
    return _host_made(_np.full(shape, fill_value), dtype)


def arange(start, stop=None, step=1, dtype=None):
    return _host_made(_np.arange(start, stop, step) if stop is not None else _np.arange(start), dtype)


def linspace(start, stop, num=50):
    return _host_made(_np.linspace(start, stop, num), None)


def eye(n, m=None, dtype=None):
    return _host_made(_np.eye(n, m), dtype)


def _like(fn):
    def made(x, dtype=None):
        be = resolve()
        a = raw(x, be)
        return _wrap(fn(be.xp, a, _dtype(dtype, be) or a.dtype), be)

    return made


zeros_like = _like(lambda xp, a, dt: xp.zeros_like(a, dtype=dt))
ones_like = _like(lambda xp, a, dt: xp.ones_like(a, dtype=dt))
empty_like = zeros_like


def full_like(x, fill_value, dtype=None):
    be = resolve()
    a = raw(x, be)
    return _wrap(be.xp.full_like(a, fill_value, dtype=_dtype(dtype, be) or a.dtype), be)


def copy(x):
    return array(x, copy=True)


def astype(x, dtype):
    be = resolve()
    return _wrap(be.xp.astype(raw(x, be), _dtype(dtype, be)), be)


# --------------------------------------------------------------------------- elementwise
_FLOAT_VALUED = {"exp", "log", "sqrt", "tanh", "sin", "cos", "tan", "log1p", "expm1", "log2", "log10"}


def _unary(name, xp_name=None):
    @numpy_own(name)
    def fn(be, x):
        if isinstance(x, (*_SCALARS, _np.generic)):  # NumPy's scalar, as NumPy gives
            return getattr(_np, name)(x)
        a = raw(x, be)
        if name in _FLOAT_VALUED:
            a = _floating(a, be)
        return _wrap(getattr(be.xp, xp_name or name)(a), be)

    return fn


exp, log, sqrt, tanh = _unary("exp"), _unary("log"), _unary("sqrt"), _unary("tanh")
sin, cos, tan = _unary("sin"), _unary("cos"), _unary("tan")
log1p, expm1, log2, log10 = _unary("log1p"), _unary("expm1"), _unary("log2"), _unary("log10")
abs, sign, negative = _unary("abs"), _unary("sign"), _unary("negative")  # noqa: A001 (NumPy's names)
square, floor, ceil = _unary("square"), _unary("floor"), _unary("ceil")
isnan, isfinite, isinf = _unary("isnan"), _unary("isfinite"), _unary("isinf")
logical_not = _unary("logical_not")


def _binary(name, xp_name=None):
    @numpy_own(name)
    def fn(be, x1, x2):
        if isinstance(x1, (*_SCALARS, _np.generic)) and isinstance(x2, (*_SCALARS, _np.generic)):
            return getattr(_np, name)(x1, x2)
        a, b = raw(x1, be), raw(x2, be)
        if _boxing(be):
            a, b = common((a, b), be)
            a, b = (_scalar(v, b if hasattr(b, "shape") else a, be) for v in (a, b))
        if name == "divide":
            a, b = (v if isinstance(v, _SCALARS) else _floating(v, be) for v in (a, b))
        return _wrap(getattr(be.xp, xp_name or name)(a, b), be)

    return fn


def _scalar(v, like, be):
    if isinstance(v, _SCALARS):
        return be.xp.asarray(v, dtype=like.dtype, device=be.device)
    return v


add_, subtract, multiply, divide = _binary("add"), _binary("subtract"), _binary("multiply"), _binary("divide")
true_divide = divide
maximum, minimum, power = _binary("maximum"), _binary("minimum"), _binary("power", "pow")
equal, not_equal = _binary("equal"), _binary("not_equal")
greater, greater_equal, less, less_equal = (_binary("greater"), _binary("greater_equal"),
                                           _binary("less"), _binary("less_equal"))
logical_and, logical_or = _binary("logical_and"), _binary("logical_or")


class _Add:
    """``np.add(a, b)`` and ``np.add.at(x, index, v)``: ``x[index] += v`` where repeated indices
    accumulate (the books' ``np.add.at(dW, idx, dout)``), changing ``x`` itself (a box's
    contents on jax, dask and array_api_strict)."""

    def __call__(self, x1, x2):
        return add_(x1, x2)

    def at(self, x, index, value) -> None:
        be = resolve()
        a = raw(x, be)
        idx = tuple(raw(i, be) if hasattr(i, "shape") or isinstance(i, list) else i for i in index) \
            if isinstance(index, tuple) else (raw(index, be) if hasattr(index, "shape") or isinstance(index, list)
                                               else index)
        v = raw(value, be)
        new = library_of(a).add_at(a, idx, v)
        if new is None:  # no accumulating scatter in the library: sum on the host
            host = to_numpy(a).copy()
            hidx = tuple(asnumpy(i) if hasattr(i, "shape") else i for i in idx) if isinstance(idx, tuple) \
                else (asnumpy(idx) if hasattr(idx, "shape") else idx)
            _np.add.at(host, hidx, asnumpy(v))
            new = from_host_like(host, a)
        if type(x) is ndarray:
            x.data = materialize(new)
        elif new is not a:
            a[...] = new


add = _Add()


@numpy_own()
def where(be, condition, x=None, y=None):
    c = raw(condition, be)
    if x is None and y is None:
        return _wrap(tuple(be.xp.nonzero(c)), be)
    a, b = raw(x, be), raw(y, be)
    if _boxing(be) or isinstance(a, _SCALARS) or isinstance(b, _SCALARS):
        a, b = common((a, b), be)
        ref = a if hasattr(a, "shape") else b if hasattr(b, "shape") else be.asarray(_np.asarray(a))
        a, b = _scalar(a, ref, be), _scalar(b, ref, be)
    return _wrap(be.xp.where(c, a, b), be)


@numpy_own()
def clip(be, x, a_min=None, a_max=None):
    a = raw(x, be)
    lo = None if a_min is None else float(a_min) if _kind(a, be) == "f" else int(a_min)
    hi = None if a_max is None else float(a_max) if _kind(a, be) == "f" else int(a_max)
    return _wrap(be.xp.clip(a, min=lo, max=hi), be)


# --------------------------------------------------------------------------- reductions
@numpy_own()
def sum(be, x, axis=None, dtype=None, keepdims=False):  # noqa: A001 (NumPy's name)
    if isinstance(x, (*_SCALARS, _np.generic)):
        return _np.sum(x)
    a = raw(x, be)
    if _kind(a, be) == "b":
        a = be.xp.astype(a, _default_int(be))
    out = be.xp.sum(a, axis=_axis(axis), keepdims=keepdims)
    return _wrap(out if dtype is None else be.xp.astype(out, _dtype(dtype, be)), be)


def _reduce(name, floats=False):
    @numpy_own(name)
    def fn(be, x, axis=None, keepdims=False):
        if isinstance(x, (*_SCALARS, _np.generic)):
            return getattr(_np, name)(x)
        a = raw(x, be)
        if floats:
            a = _floating(a, be)
        return _wrap(getattr(be.xp, name)(a, axis=_axis(axis), keepdims=keepdims), be)

    return fn


mean, std, var = _reduce("mean", True), _reduce("std", True), _reduce("var", True)
max, min, prod = _reduce("max"), _reduce("min"), _reduce("prod")  # noqa: A001 (NumPy's names)
amax, amin = max, min


@numpy_own()
def average(be, x, axis=None):
    """The unweighted ``average`` (the book's gradient check): ``mean``."""
    return mean(x, axis=axis)


all, any = _reduce("all"), _reduce("any")  # noqa: A001 (NumPy's names)


@numpy_own()
def argmax(be, x, axis=None):
    return _wrap(be.xp.argmax(raw(x, be), axis=axis), be)


@numpy_own()
def argmin(be, x, axis=None):
    return _wrap(be.xp.argmin(raw(x, be), axis=axis), be)


@numpy_own()
def cumsum(be, x, axis=None):
    a = raw(x, be)
    if axis is None:
        a, axis = be.xp.reshape(a, (-1,)), 0
    return _wrap(be.xp.cumulative_sum(a, axis=axis), be)


def allclose(a, b, rtol=1e-5, atol=1e-8) -> bool:
    return bool(_np.allclose(asnumpy(a), asnumpy(b), rtol=rtol, atol=atol))


# --------------------------------------------------------------------------- linear algebra
@numpy_own()
def dot(be, a, b):
    """NumPy's ``dot``: a matrix (or inner) product, or a product with a scalar."""
    x, y = raw(a, be), raw(b, be)
    if isinstance(x, _SCALARS) or isinstance(y, _SCALARS) or x.ndim == 0 or y.ndim == 0:
        return multiply(a, b)
    if _boxing(be):
        x, y = common((x, y), be)
    return _wrap(be.xp.matmul(x, y), be)


matmul = numpy_own("matmul")(dot.__wrapped__)


@numpy_own()
def outer(be, a, b):
    x, y = raw(a, be), raw(b, be)
    return _wrap(be.xp.reshape(x, (-1, 1)) * be.xp.reshape(y, (1, -1)), be)


# --------------------------------------------------------------------------- iteration
class nditer:  # noqa: N801 (NumPy's name)
    """The books' element loop: ``it = np.nditer(x, flags=['multi_index'], op_flags=['readwrite'])``,
    ``while not it.finished: idx = it.multi_index; ...; it.iternext()``."""

    def __init__(self, x, flags=None, op_flags=None):
        self._indices = iter(_np.ndindex(*x.shape))
        self.finished = False
        self.multi_index = None
        self.iternext()

    def iternext(self) -> bool:
        try:
            self.multi_index = next(self._indices)
        except StopIteration:
            self.finished = True
        return not self.finished


# --------------------------------------------------------------------------- random numbers
class _Random:
    """``np.random``: one ``numpy.random.RandomState`` on the host; float draws move to the
    chosen backend in its dtype, integer draws stay host NumPy arrays (indices)."""

    def __init__(self):
        self.state = _np.random.RandomState()

    def seed(self, seed=None) -> None:
        self.state.seed(seed)

    def _float(self, host):
        if _np.ndim(host) == 0:
            return float(host)
        return _host_made(_np.asarray(host), None)

    def randn(self, *shape):
        return self._float(self.state.randn(*shape))

    def rand(self, *shape):
        return self._float(self.state.rand(*shape))

    def random(self, size=None):
        return self._float(self.state.random_sample(size))

    random_sample = random

    def standard_normal(self, size=None):
        return self._float(self.state.standard_normal(size))

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._float(self.state.normal(loc, scale, size))

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._float(self.state.uniform(low, high, size))

    def randint(self, low, high=None, size=None):
        return self.state.randint(low, high, size)

    def choice(self, a, size=None, replace=True, p=None):
        if hasattr(a, "shape"):  # draw elements of an array: indices on the host, values on its device
            idx = self.state.choice(a.shape[0], size, replace, None if p is None else asnumpy(p))
            return take(a, idx, axis=0) if _np.ndim(idx) else a[int(idx)]
        return self.state.choice(a, size, replace, None if p is None else asnumpy(p))

    def permutation(self, x):
        if isinstance(x, (int, _np.integer)):
            return self.state.permutation(x)
        return take(x, self.state.permutation(len(x)), axis=0)

    def shuffle(self, x) -> None:
        """Shuffle ``x`` along its first axis, in place (a box's contents on immutable backends)."""
        if isinstance(x, (_np.ndarray, list)):
            self.state.shuffle(x)
            return
        perm = self.state.permutation(x.shape[0])
        if type(x) is ndarray:
            x.data = take(x, perm, axis=0).data
        else:
            x[...] = take(x, perm, axis=0)


random = _Random()


def __getattr__(name: str):
    raise AttributeError(
        f"xpnet.dlfs1.np has no {name!r}: it offers the NumPy the books' code calls (zeros, dot, argmax, exp, "
        f"random.randn, add.at, ...). For anything else, bring the array to the host with np.asnumpy(x) "
        f"and use NumPy itself"
    )
