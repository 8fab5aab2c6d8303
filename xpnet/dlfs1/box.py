"""The mutable array of :mod:`xpnet.dlfs1.np` on backends whose arrays do not behave as NumPy's.

The books write in place: ``network.params[key] -= lr * grad[key]`` on a dict whose arrays the
layers also hold, ``dout[self.mask] = 0``, ``x[idx] = tmp_val + h``. A jax or dask array cannot
change: ``-=`` builds a new array and rebinds the name, and the layers keep reading the old one.
:class:`ndarray` holds the backend's array in ``.data``; its in-place operators and
``__setitem__`` put a new array into ``.data``, so every holder of the box sees the change, as
every holder of a NumPy array does. Everything else (arithmetic, comparisons, indexing, the
methods the books call) returns a new box.

On a library whose arrays change in place but whose methods are not NumPy's (torch: no
``astype``, ``max(axis=1)`` a pair, ``size`` a method), the box gives the books NumPy's methods
and writes into its array itself (``-=``, ``x[index] = v``), as cheaply as the library can; a
slice or ``reshape`` of it is then a view, as in NumPy.

On jax, dask and array_api_strict, a box made from another (``x[0]``, ``x.reshape(...)``,
``x.T``) is a copy, not a view: writing into it leaves the original as it was.
"""

from __future__ import annotations

import operator

import numpy as np

from ..backend import device, dtype_name, from_host_like, library_of, materialize, namespace, resolve, to_numpy
from ..errors import ShapeError

_SCALARS = (bool, int, float, complex)


class _Meta(type):
    def __instancecheck__(cls, x) -> bool:
        """``isinstance(x, np.ndarray)`` holds for a box and for a plain array of any backend."""
        return type.__instancecheck__(cls, x) or (hasattr(x, "shape") and hasattr(x, "dtype")
                                                  and not isinstance(x, np.generic))


def raw(a, be=None):
    """``a`` as the chosen backend's own array (or a Python scalar): a box's ``.data``, a backend
    array as it is, host data (NumPy arrays, lists) moved to the backend."""
    if type(a) is ndarray:
        return a.data
    if isinstance(a, np.generic):  # before Python's scalars: a NumPy float64 is also a float
        return a.item()
    if isinstance(a, _SCALARS):
        return a
    be = be or resolve()
    if library_of(a).name == be.name:
        return a
    return be.asarray(a)


def _kind(dt, xp) -> str:
    if xp.isdtype(dt, "bool"):
        return "b"
    return "f" if xp.isdtype(dt, "real floating") else "i"


def common(args, be=None):
    """The operands of one elementwise operation, promoted as NumPy would (bool < int < float;
    Python scalars take the arrays' kind) so that jax, dask and array_api_strict accept them."""
    be = be or resolve()
    xp = be.xp
    arrs = [a for a in args if not isinstance(a, _SCALARS)]
    if not arrs:
        return list(args)
    kinds = {_kind(a.dtype, xp) for a in arrs}
    if any(isinstance(a, float) for a in args):
        kinds.add("f")
    if len(kinds) == 1:
        return list(args)
    if "f" in kinds:
        floats = [a.dtype for a in arrs if _kind(a.dtype, xp) == "f"]
        target = floats[0] if floats else be.dtype
    else:
        target = next(a.dtype for a in arrs if _kind(a.dtype, xp) == "i")
    return [a if isinstance(a, _SCALARS) or a.dtype == target else xp.astype(a, target) for a in args]


# --------------------------------------------------------------------------- indexing
def _host_index(index):
    """The index with every array in it on the host (NumPy), for position tables."""
    parts = index if isinstance(index, tuple) else (index,)
    out = tuple(to_numpy(raw(i)) if hasattr(i, "shape") or isinstance(i, list) else i for i in parts)
    return out if isinstance(index, tuple) else out[0]


def _raw_index(index, be):
    parts = index if isinstance(index, tuple) else (index,)
    out = tuple(i.data if type(i) is ndarray else np.asarray(i) if isinstance(i, list) else
                i.item() if isinstance(i, np.generic) else i for i in parts)
    return out if isinstance(index, tuple) else out[0]


def _positions(shape, index) -> np.ndarray:
    """Flat positions that ``x[index]`` selects from an array of ``shape`` (NumPy's rules)."""
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)[_host_index(index)]


def get_items(x, index, be):
    """``x[index]`` for any NumPy index: the library's own indexing, else a ``take`` of the
    flat positions NumPy selects."""
    try:
        return x[_raw_index(index, be)]
    except (TypeError, IndexError, ValueError, NotImplementedError):
        pos = np.asarray(_positions(tuple(x.shape), index))
    xp = be.xp
    flat = xp.reshape(x, (-1,))
    got = xp.take(flat, from_host_like(pos.reshape(-1), x), axis=0)
    return xp.reshape(got, pos.shape)


def set_items(x, index, value, be):
    """A new array: ``x`` with ``x[index] = value`` (NumPy's rules, last write wins)."""
    xp = be.xp
    value = raw(value, be)
    if not isinstance(value, _SCALARS) and value.dtype != x.dtype:
        value = xp.astype(value, x.dtype)
    idx = _raw_index(index, be)
    if hasattr(idx, "shape") and _kind(idx.dtype, xp) == "b" and tuple(idx.shape) == tuple(x.shape):
        if isinstance(value, _SCALARS) or value.ndim == 0:  # dout[mask] = 0: a where, on every library
            return xp.where(idx, _scalar_like(value, x, xp), x)
    new = library_of(x).set_items(x, idx, value)
    if new is not None:
        return new
    table = np.asarray(_positions(tuple(x.shape), index))
    pos = table.reshape(-1)
    order = np.full(int(np.prod(x.shape)), -1, dtype=np.int64)
    order[pos] = np.arange(pos.size)  # the last write to a position wins, as in NumPy
    flat = xp.reshape(x, (-1,))
    mask = from_host_like(order >= 0, x)
    if isinstance(value, _SCALARS) or value.ndim == 0:
        src = _scalar_like(value, x, xp)
    else:
        vals = xp.reshape(xp.broadcast_to(value, table.shape), (-1,))
        src = xp.take(vals, from_host_like(np.maximum(order, 0), x), axis=0)
    return xp.reshape(xp.where(mask, src, flat), tuple(x.shape))


def write_into(x, index, value, be) -> None:
    """``x[index] = value`` in ``x`` itself (a library that writes in place), NumPy's index rules:
    the library's own indexing, else the functional form copied back into ``x``."""
    value = raw(value, be)
    if not isinstance(value, _SCALARS) and value.dtype != x.dtype:
        value = be.xp.astype(value, x.dtype)
    try:
        x[_raw_index(index, be)] = value
    except (TypeError, IndexError, ValueError, NotImplementedError):
        x[...] = set_items(x, index, value, be)
    except RuntimeError as e:  # torch: a value that does not fit the selection
        raise ShapeError(f"x[index] = value: {e}") from None


def _scalar_like(value, x, xp):
    """A Python scalar as a 0-d array of ``x``'s dtype and device (``where`` on every library)."""
    return xp.asarray(value, dtype=x.dtype, device=device(x)) if isinstance(value, _SCALARS) else value


# --------------------------------------------------------------------------- the box
def _binary(op, reflected=False):
    def method(self, other):
        if type(other) is not ndarray and not isinstance(other, (*_SCALARS, np.generic)) \
                and not hasattr(other, "shape") and not isinstance(other, list):
            return NotImplemented
        be = resolve()
        a, b = self.data, raw(other, be)
        if reflected:
            a, b = b, a
        a, b = common((a, b), be)
        return ndarray(op(a, b))

    return method


def _true_divide(a, b):
    xp = namespace(a if hasattr(a, "shape") else b)
    be = resolve()
    a = a if isinstance(a, _SCALARS) or _kind(a.dtype, xp) == "f" else xp.astype(a, be.dtype)
    b = b if isinstance(b, _SCALARS) or _kind(b.dtype, xp) == "f" else xp.astype(b, be.dtype)
    if isinstance(a, int):
        a = float(a)
    if isinstance(b, int):
        b = float(b)
    return a / b


def _writes_in_place(a) -> bool:
    """True where ``a``'s library changes arrays in place (torch): the box then writes into its
    array, as NumPy does, instead of replacing it."""
    return library_of(a).writes_in_place


def _inplace(op, iop):
    def method(self, other):
        be = resolve()
        a, b = self.data, raw(other, be)
        if not isinstance(b, _SCALARS):
            _fits(b.shape, a.shape)
        if _writes_in_place(a):
            if not isinstance(b, _SCALARS) and b.dtype != a.dtype:  # NumPy keeps the target's dtype
                b = be.xp.astype(b, a.dtype)
            iop(a, b)
            return self
        new = op(*common((a, b), be))
        if new.dtype != a.dtype:  # NumPy keeps the target's dtype
            new = be.xp.astype(new, a.dtype)
        self.data = materialize(new)
        return self

    return method


def _fits(shape, target) -> None:
    """Refuse an operand that would not broadcast to ``target`` (the array written into)."""
    try:
        fits = np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"in-place operation: operand of shape {tuple(shape)} cannot be written "
                         f"into an array of shape {tuple(target)}")


def _axis_args(axis):
    return tuple(axis) if isinstance(axis, list) else axis


class ndarray(metaclass=_Meta):  # noqa: N801 (NumPy's name, as the books write it)
    """A mutable array of the chosen backend: the backend's array in ``.data``."""

    __slots__ = ("data", "__weakref__")
    __array_ufunc__ = None  # NumPy arrays defer to the box's reflected operators
    __array_priority__ = 1000
    __hash__ = None

    def __init__(self, data):
        self.data = data

    # ---------------------------------------------------------------- what it is
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(np.prod(self.data.shape))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(dtype_name(self.data.dtype))

    @property
    def T(self):  # noqa: N802
        return ndarray(namespace(self.data).permute_dims(self.data, tuple(range(self.ndim))[::-1]))

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return repr(to_numpy(self.data))

    def __str__(self) -> str:
        return str(to_numpy(self.data))

    def __format__(self, spec: str) -> str:
        host = to_numpy(self.data)
        return format(host.item() if host.ndim == 0 else host, spec)

    def __array__(self, dtype=None, copy=None):
        host = to_numpy(self.data)
        return host if dtype is None else host.astype(dtype)

    def __float__(self) -> float:
        return float(to_numpy(self.data))

    def __int__(self) -> int:
        return int(to_numpy(self.data))

    def __index__(self) -> int:
        return operator.index(to_numpy(self.data).item())

    def __bool__(self) -> bool:
        return bool(to_numpy(self.data))

    def item(self):
        return to_numpy(self.data).item()

    def tolist(self):
        return to_numpy(self.data).tolist()

    # ---------------------------------------------------------------- arithmetic
    __add__, __radd__ = _binary(operator.add), _binary(operator.add, True)
    __sub__, __rsub__ = _binary(operator.sub), _binary(operator.sub, True)
    __mul__, __rmul__ = _binary(operator.mul), _binary(operator.mul, True)
    __truediv__, __rtruediv__ = _binary(_true_divide), _binary(_true_divide, True)
    __floordiv__, __rfloordiv__ = _binary(operator.floordiv), _binary(operator.floordiv, True)
    __mod__ = _binary(operator.mod)
    __pow__, __rpow__ = _binary(operator.pow), _binary(operator.pow, True)
    __matmul__, __rmatmul__ = _binary(operator.matmul), _binary(operator.matmul, True)
    __eq__, __ne__ = _binary(operator.eq), _binary(operator.ne)
    __lt__, __le__ = _binary(operator.lt), _binary(operator.le)
    __gt__, __ge__ = _binary(operator.gt), _binary(operator.ge)
    __and__, __or__, __xor__ = _binary(operator.and_), _binary(operator.or_), _binary(operator.xor)
    __iadd__, __isub__ = _inplace(operator.add, operator.iadd), _inplace(operator.sub, operator.isub)
    __imul__ = _inplace(operator.mul, operator.imul)
    __itruediv__ = _inplace(_true_divide, operator.itruediv)
    __ipow__ = _inplace(operator.pow, operator.ipow)

    def __neg__(self):
        return ndarray(-self.data)

    def __pos__(self):
        return self

    def __abs__(self):
        return ndarray(namespace(self.data).abs(self.data))

    def __invert__(self):
        return ndarray(~self.data)

    # ---------------------------------------------------------------- indexing
    def __getitem__(self, index):
        return ndarray(get_items(self.data, index, resolve()))

    def __setitem__(self, index, value) -> None:
        be = resolve()
        if _writes_in_place(self.data):  # torch: written into the array, views included
            write_into(self.data, index, value, be)
        else:
            self.data = materialize(set_items(self.data, index, value, be))

    # ---------------------------------------------------------------- methods the books call
    def _call(self, name, *args, **kw):
        from . import np as facade

        return getattr(facade, name)(self, *args, **kw)

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return self._call("reshape", tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return self._call("transpose", tuple(axes) or None)

    def astype(self, dtype, copy=True):
        return self._call("astype", dtype)

    def flatten(self):
        return self.reshape(-1)

    ravel = flatten

    def copy(self):
        return ndarray(namespace(self.data).asarray(self.data, copy=True))

    def fill(self, value) -> None:
        self[...] = value

    def dot(self, other):
        return self._call("dot", other)

    def sum(self, axis=None, dtype=None, keepdims=False):
        return self._call("sum", axis=_axis_args(axis), dtype=dtype, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return self._call("mean", axis=_axis_args(axis), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return self._call("max", axis=_axis_args(axis), keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return self._call("min", axis=_axis_args(axis), keepdims=keepdims)

    def std(self, axis=None, keepdims=False):
        return self._call("std", axis=_axis_args(axis), keepdims=keepdims)

    def var(self, axis=None, keepdims=False):
        return self._call("var", axis=_axis_args(axis), keepdims=keepdims)

    def argmax(self, axis=None):
        return self._call("argmax", axis=axis)

    def argmin(self, axis=None):
        return self._call("argmin", axis=axis)

    def all(self, axis=None):
        return self._call("all", axis=axis)

    def any(self, axis=None):
        return self._call("any", axis=axis)

    def clip(self, a_min=None, a_max=None):
        return self._call("clip", a_min, a_max)

    def squeeze(self, axis=None):
        return self._call("squeeze", axis=axis)
