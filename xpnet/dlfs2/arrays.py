"""How the second book's facade hands the books' arrays to xpnet's layers and back.

The books' NumPy (:mod:`xpnet.dlfs1.np`) gives the chosen backend's own arrays where they are
NumPy's or behave like them (numpy, cupy) and mutable boxes (:class:`xpnet.dlfs1.box.ndarray`,
the array in ``.data``) elsewhere (torch, jax, dask, array_api_strict). xpnet's layers work on
the backend's own arrays. So the facade:

- unboxes what it is given (:func:`raw`; host NumPy data is moved to the backend, float data in
  the dtype of the layer's weights: :func:`like`);
- gives back what the books' NumPy would (:func:`out`: a box where the backend needs one);
- keeps every parameter and gradient it owns writable in place (:func:`mutable`), so that
  ``grads[0][...] = dW`` and an optimizer's ``params[i] -= ...`` reach every holder.
"""

from __future__ import annotations

import numpy

from ..backend import library_of, resolve
from ..dlfs1 import np
from ..dlfs1.arrays import _boxing
from ..dlfs1.box import ndarray as Box
from ..dlfs1.box import raw as _raw
from ..errors import DTypeError

__all__ = ["Box", "is_box", "like", "mutable", "np", "out", "put", "raw", "to_host"]


def is_box(a) -> bool:
    return type(a) is Box


def raw(a):
    """The chosen backend's own array for ``a`` (a box's contents; host data moved there)."""
    return _raw(a)


def like(x, ref):
    """``x`` on the backend in ``ref``'s float dtype: a float64 host batch meets float32 weights
    as the same numbers on every backend, and integer one-hot rows (the book's chapter 3 feeds
    them to ``MatMul``) become floats, as NumPy's ``dot`` would make them."""
    a = _raw(x)
    if isinstance(a, (bool, int, float)):
        return a
    r = _raw(ref)
    return a if a.dtype == r.dtype else resolve().xp.astype(a, r.dtype)


def out(a):
    """``a`` as the books' NumPy gives results: in a box on backends whose arrays cannot change."""
    if a is None or isinstance(a, (bool, int, float)) or is_box(a):
        return a
    return Box(a) if _boxing(resolve()) else a


def mutable(a, what: str = "a parameter"):
    """``a`` as an array that changes in place: a box, or the backend's own writable array.
    Host NumPy data on the numpy backend stays the caller's array (as in the book)."""
    if is_box(a):
        return a
    be = resolve()
    if isinstance(a, numpy.ndarray) and library_of(a).name == be.name:
        if a.dtype.kind != "f":
            raise DTypeError(f"{what} must be floating-point, got dtype {a.dtype}; make it with "
                             f"np.random.randn(...) or np.zeros(..., dtype='f')")
        return a
    return out(_raw(a))


def put(dst, value) -> None:
    """The book's ``dst[...] = value`` for a whole array: on a box of jax or dask, ``value`` (cast to
    the box's dtype) simply becomes its contents, with no copy and no evaluation (dask); elsewhere
    it is copied in, as NumPy does."""
    if is_box(dst) and not library_of(dst.data).writes_in_place and not isinstance(value, (bool, int, float)) \
            and tuple(value.shape) == tuple(dst.shape):
        a = raw(value)
        dst.data = a if a.dtype == dst.data.dtype else resolve().xp.astype(a, dst.data.dtype)
    else:
        dst[...] = value


def to_host(a) -> numpy.ndarray:
    """``a`` (a box, any backend's array, a list or a number) as a host NumPy array."""
    return np.asnumpy(a)
