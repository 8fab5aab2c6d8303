"""How :mod:`xpnet.dlfs1.np` makes its results (the backend's own arrays, or boxes where arrays
cannot change in place), its dtypes, and its shape functions (``reshape``, ``concatenate``,
``pad``, ``take``...)."""

from __future__ import annotations

import functools
import importlib

import numpy as _np

from ..backend import dtype_name, library, resolve, to_numpy
from ..errors import ConfigError
from .box import common, get_items, ndarray, raw


# --------------------------------------------------------------------------- plumbing
def _boxing(be) -> bool:
    """True where ``np`` hands out boxes: the backend's arrays cannot change in place (jax, dask,
    array_api_strict) or their methods are not NumPy's (torch)."""
    return not (be.writes_in_place and be.numpy_methods)


_OWN: dict = {}


def _own(be):
    """The module of NumPy's own functions for the backend's arrays (numpy itself), or None."""
    try:
        return _OWN[be.name]
    except KeyError:
        name = library(be.name).numpy_functions
        mod = _OWN[be.name] = importlib.import_module(name) if name else None
        return mod


def numpy_own(name=None):
    """Decorate ``fn(be, *args)``: where the backend's library has NumPy's own functions (numpy),
    the call is NumPy's ``name`` (its scalars, dtypes and results exactly); elsewhere ``fn`` on
    the chosen backend."""

    def decorate(fn):
        own_name = name or fn.__name__

        @functools.wraps(fn)
        def call(*args, **kw):
            be = resolve()
            mod = _own(be)
            return fn(be, *args, **kw) if mod is None else getattr(mod, own_name)(*args, **kw)

        return call

    return decorate


def _wrap(x, be):
    if isinstance(x, tuple):
        return tuple(_wrap(a, be) for a in x)
    return ndarray(x) if _boxing(be) and hasattr(x, "shape") and not isinstance(x, _np.generic) else x


def _dtype(dt, be):
    """A dtype as the books write it (``np.float32``, ``'f'``, ``float``) as the backend's own."""
    if dt is None:
        return None
    try:
        name = _np.dtype(dt).name
    except TypeError:
        name = dtype_name(dt)
    if name == "float64":
        library(be.name).enable_float64()  # jax: otherwise float64 is silently float32
    try:
        return getattr(be.xp, name)
    except AttributeError:
        raise ConfigError(f"backend {be.name!r} has no dtype {name}; use float32, float64, int32, int64 "
                          "or bool") from None


def _kind(x, be) -> str:
    xp = be.xp
    if xp.isdtype(x.dtype, "bool"):
        return "b"
    return "f" if xp.isdtype(x.dtype, "real floating") else "i"


def _floating(x, be):
    """``x`` as floats (NumPy gives floats for ``exp(int)``, ``mean(bool)``)."""
    return x if _kind(x, be) == "f" else be.xp.astype(x, be.dtype)


def _default_int(be):
    """The backend's default integer dtype (int64; int32 on jax without x64)."""
    return be.xp.__array_namespace_info__().default_dtypes(device=be.device)["integral"]


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def asnumpy(x):
    """``x`` as a host NumPy array (a box, any backend's array, or host data)."""
    if type(x) is ndarray:
        return to_numpy(x.data)
    if isinstance(x, _np.ndarray):
        return x
    return to_numpy(x) if hasattr(x, "shape") else _np.asarray(x)


# --------------------------------------------------------------------------- shapes
@numpy_own()
def reshape(be, x, shape):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _wrap(be.xp.reshape(raw(x, be), shape), be)


@numpy_own()
def ravel(be, x):
    return _wrap(be.xp.reshape(raw(x, be), (-1,)), be)


@numpy_own()
def transpose(be, x, axes=None):
    a = raw(x, be)
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(axes)
    return _wrap(be.xp.permute_dims(a, axes), be)


@numpy_own()
def swapaxes(be, x, axis1, axis2):
    a = raw(x, be)
    axes = list(range(a.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return _wrap(be.xp.permute_dims(a, tuple(axes)), be)


@numpy_own()
def expand_dims(be, x, axis):
    return _wrap(be.xp.expand_dims(raw(x, be), axis=axis), be)


@numpy_own()
def squeeze(be, x, axis=None):
    a = raw(x, be)
    if axis is None:
        axis = tuple(i for i, n in enumerate(a.shape) if n == 1)
    return _wrap(be.xp.squeeze(a, axis=axis), be)


@numpy_own()
def broadcast_to(be, x, shape):
    return _wrap(be.xp.broadcast_to(raw(x, be), tuple(shape)), be)


def _many(arrays, be):
    xs = [raw(a, be) for a in arrays]
    return common(xs, be) if _boxing(be) else xs


@numpy_own()
def concatenate(be, arrays, axis=0):
    return _wrap(be.xp.concat(_many(arrays, be), axis=axis), be)


@numpy_own()
def stack(be, arrays, axis=0):
    return _wrap(be.xp.stack(_many(arrays, be), axis=axis), be)


@numpy_own()
def hstack(be, arrays):
    xs = _many(arrays, be)
    return _wrap(be.xp.concat(xs, axis=0 if xs[0].ndim == 1 else 1), be)


@numpy_own()
def vstack(be, arrays):
    xs = [a if a.ndim > 1 else be.xp.reshape(a, (1, -1)) for a in _many(arrays, be)]
    return _wrap(be.xp.concat(xs, axis=0), be)


@numpy_own()
def repeat(be, x, repeats, axis=None):
    a = raw(x, be)
    if axis is None:
        a, axis = be.xp.reshape(a, (-1,)), 0
    return _wrap(be.xp.repeat(a, repeats, axis=axis), be)


@numpy_own()
def tile(be, x, reps):
    return _wrap(be.xp.tile(raw(x, be), (reps,) if isinstance(reps, int) else tuple(reps)), be)


@numpy_own()
def pad(be, x, pad_width, mode="constant", constant_values=0):
    """NumPy's ``pad`` in its ``constant`` mode (the books' im2col): blocks of the constant
    concatenated on each side, axis by axis."""
    if mode != "constant":
        raise ConfigError(f"pad supports mode='constant' (what the books use), got mode={mode!r}")
    a = raw(x, be)
    widths = _np.broadcast_to(_np.asarray(pad_width, dtype=_np.int64), (a.ndim, 2))
    for axis, (lo, hi) in enumerate(widths):
        parts = []
        for n in (lo, hi):
            shape = list(a.shape)
            shape[axis] = int(n)
            parts.append(be.xp.full(tuple(shape), constant_values, dtype=a.dtype, device=be.device))
        if lo or hi:
            a = be.xp.concat([parts[0], a, parts[1]], axis=axis)
    return _wrap(a, be)


@numpy_own()
def take(be, x, indices, axis=None):
    a = raw(x, be)
    if axis is None:
        a, axis = be.xp.reshape(a, (-1,)), 0
    return _wrap(get_items(a, (slice(None),) * axis + (asnumpy(indices),), be), be)
