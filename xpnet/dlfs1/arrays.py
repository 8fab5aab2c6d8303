"""How :mod:`xpnet.dlfs1.np` makes its results (the backend's own arrays, or boxes where arrays
cannot change in place), its dtypes, and its shape functions (``reshape``, ``concatenate``,
``pad``, ``take``...)."""

from __future__ import annotations

import numpy as _np

from ..backend import dtype_name, library, resolve, to_numpy
from ..errors import ConfigError
from .box import common, get_items, ndarray, raw


# --------------------------------------------------------------------------- plumbing
def _boxing(be) -> bool:
    return not be.writes_in_place


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
def reshape(x, shape):
    be = resolve()
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _wrap(be.xp.reshape(raw(x, be), shape), be)


def ravel(x):
    return reshape(x, (-1,))


def transpose(x, axes=None):
    be = resolve()
    a = raw(x, be)
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(axes)
    return _wrap(be.xp.permute_dims(a, axes), be)


def swapaxes(x, axis1, axis2):
    be = resolve()
    a = raw(x, be)
    axes = list(range(a.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return _wrap(be.xp.permute_dims(a, tuple(axes)), be)


def expand_dims(x, axis):
    be = resolve()
    return _wrap(be.xp.expand_dims(raw(x, be), axis=axis), be)


def squeeze(x, axis=None):
    be = resolve()
    a = raw(x, be)
    if axis is None:
        axis = tuple(i for i, n in enumerate(a.shape) if n == 1)
    return _wrap(be.xp.squeeze(a, axis=axis), be)


def broadcast_to(x, shape):
    be = resolve()
    return _wrap(be.xp.broadcast_to(raw(x, be), tuple(shape)), be)


def _many(arrays, be):
    xs = [raw(a, be) for a in arrays]
    return common(xs, be) if _boxing(be) else xs


def concatenate(arrays, axis=0):
    be = resolve()
    return _wrap(be.xp.concat(_many(arrays, be), axis=axis), be)


def stack(arrays, axis=0):
    be = resolve()
    return _wrap(be.xp.stack(_many(arrays, be), axis=axis), be)


def hstack(arrays):
    be = resolve()
    xs = _many(arrays, be)
    return _wrap(be.xp.concat(xs, axis=0 if xs[0].ndim == 1 else 1), be)


def vstack(arrays):
    be = resolve()
    xs = [a if a.ndim > 1 else be.xp.reshape(a, (1, -1)) for a in _many(arrays, be)]
    return _wrap(be.xp.concat(xs, axis=0), be)


def repeat(x, repeats, axis=None):
    be = resolve()
    a = raw(x, be)
    if axis is None:
        a, axis = be.xp.reshape(a, (-1,)), 0
    return _wrap(be.xp.repeat(a, repeats, axis=axis), be)


def tile(x, reps):
    be = resolve()
    return _wrap(be.xp.tile(raw(x, be), (reps,) if isinstance(reps, int) else tuple(reps)), be)


def pad(x, pad_width, mode="constant", constant_values=0):
    """NumPy's ``pad`` in its ``constant`` mode (the books' im2col): blocks of the constant
    concatenated on each side, axis by axis."""
    if mode != "constant":
        raise ConfigError(f"pad supports mode='constant' (what the books use), got mode={mode!r}")
    be = resolve()
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


def take(x, indices, axis=None):
    be = resolve()
    a = raw(x, be)
    if axis is None:
        a, axis = be.xp.reshape(a, (-1,)), 0
    return _wrap(get_items(a, (slice(None),) * axis + (asnumpy(indices),), be), be)
