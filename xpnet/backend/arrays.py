"""Arrays across libraries: namespaces, host copies, uploads, dtype checks, and the few
operations whose best form differs by library (each asks the array's :class:`Library`)."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ..errors import BackendMismatchError, DTypeError
from .dtypes import DTYPES, dtype_name, host_dtype, unsupported_dtype
from .libraries import backend_name, device_label, library, library_of

device = array_api_compat.device
_ns_by_type: dict[type, Any] = {}


def namespace(*arrays) -> Any:
    """The Array API namespace of ``arrays`` (cached per array type: cheap in a hot loop)."""
    x = arrays[0]
    ns = _ns_by_type.get(type(x))
    if ns is None or len(arrays) > 1:
        try:
            ns = array_api_compat.array_namespace(*arrays)
        except TypeError as e:
            raise BackendMismatchError(
                f"expected arrays of one Array API library, got {[type(a).__name__ for a in arrays]}: {e}"
            ) from e
        if len(arrays) == 1:
            _ns_by_type[type(x)] = ns
    return ns


# --------------------------------------------------------------------------- dtypes
def dtype_error(name: str, where: str, library_name: str | None = None) -> DTypeError:
    """The error for float dtype ``name`` that xpnet does not compute in (float16, bfloat16...),
    with the cast of the library ``library_name`` that fixes it."""
    return unsupported_dtype(name, where, library(library_name).cast if library_name else None)


def check_float_dtype(dtype, where: str, library_name: str | None = None) -> None:
    """Raise :class:`DTypeError` for a float dtype other than float32 and float64 (float16,
    bfloat16, float8..., longdouble), naming ``where``, the dtype and the cast that fixes it.
    Other kinds (integers, bool) pass: their callers say what they take."""
    name = dtype_name(dtype)
    if name not in DTYPES and name.startswith(("float", "bfloat")):
        raise dtype_error(name, where, library_name)


# --------------------------------------------------------------------------- host moves
def to_numpy(x) -> np.ndarray:
    """Copy any backend's array to a host NumPy array (CuPy and GPU torch included)."""
    return library_of(x).to_numpy(x)


def host_copy(x, where: str) -> np.ndarray:
    """``to_numpy(x)`` for the functions that move data between backends, refusing float
    dtypes xpnet does not compute in before anything is copied."""
    dt = getattr(x, "dtype", None)
    if dt is not None:
        check_float_dtype(dt, where, backend_name(x))
    return to_numpy(x)


def from_host(name: str, xp, dev, a: np.ndarray, dtype):
    """Put host array ``a`` on device ``dev`` of backend ``name``, cast to ``dtype`` (or
    keeping its own dtype when None). The cast is done on the host, before the copy."""
    if a.dtype.kind not in "biufc":
        raise DTypeError(
            f"cannot move an array of dtype {a.dtype} (strings, objects or dates) to backend "
            f"{name!r}: expected numbers or booleans. Convert it first, e.g. np.asarray(a, dtype=float)"
        )
    original = a
    if dtype is not None:
        a = a.astype(host_dtype(dtype), copy=False)
    if not a.flags.writeable or any(s < 0 for s in a.strides):
        a = a.copy()  # torch refuses negative strides and warns on read-only memory
    try:
        return library(name).upload(xp, dev, a, a is not original)
    except (TypeError, ValueError) as e:
        raise DTypeError(
            f"backend {name!r} on device {device_label(dev)} cannot hold an array of dtype "
            f"{a.dtype} ({e}); cast it to a dtype it has first (float32, int32...)"
        ) from e


def from_host_like(a: np.ndarray, like) -> Any:
    """Put array ``a`` (host, or any backend's) on the namespace and device of array
    ``like``, keeping the dtype of ``a``."""
    lib = library_of(like)
    dev = lib.like_device(array_api_compat.device(like))
    return from_host(backend_name(like), namespace(like), dev, host_copy(a, "from_host_like"), None)


def to_float(x) -> float:
    """Read a 0-d array back to a Python float (one host sync)."""
    return float(to_numpy(x))


# --------------------------------------------------------------------------- per-library operations
def constant(value: float, like):
    """``value`` as the scalar operand of ``maximum`` / ``minimum`` with arrays like ``like``,
    never copied from the host more than once.

    array-api-compat's torch ``maximum`` turns a Python scalar into a new 0-d tensor on
    ``like``'s device at every call: on CUDA a host-to-device copy per call. For torch this
    gives a 0-d tensor of ``like``'s dtype on its device, made once per (dtype, device, value)
    and kept (outside inference mode, so autograd may use it later). Elsewhere it gives the
    Python float itself: NumPy and CuPy take it as it is, jax and dask fold it into the graph
    they build (an array made inside a ``jax.jit`` trace is a tracer and must not be kept).
    ``maximum(x, constant(c, x))`` equals ``maximum(x, c)`` bit for bit.
    """
    return library_of(like).constant(value, like)


def device_context(x):
    """``with device_context(x):`` runs the block with array ``x``'s device current: what
    :meth:`Backend.activate` does, for code that holds arrays, not a Backend (the trainer:
    ``with device_context(model.reference_array):`` around an epoch). A no-op
    everywhere but CuPy."""
    return library_of(x).context_of(x)


def is_writeable(x) -> bool:
    """True where ``x -= y`` really changes ``x`` in place (not on jax or dask).

    array-api-compat calls dask arrays writeable (they take ``x[i] = v``), but their
    ``-=`` builds a new array and rebinds the name, so dask is excluded here.
    """
    return library_of(x).writeable(x)


def sub_scaled_(p, g, alpha: float, work=None):
    """``p -= alpha * g`` in place, with no fresh temporary where the library allows it.

    Only for a writeable ``p`` (:func:`is_writeable`). torch does it in one fused call
    (``p.sub_(g, alpha=alpha)``); numpy and cupy write ``alpha * g`` into ``work`` (a buffer
    shaped like ``p``, made here when None) and subtract it; other libraries use
    ``p -= alpha * g``. ``alpha`` may be a 0-d array on ``p``'s device. Returns the buffer to
    pass as ``work`` next time (or None).
    A fresh temporary the size of a weight costs on the CPU about as much as the
    arithmetic (a new mapping that page-faults), hence the reuse.
    """
    return library_of(p).sub_scaled_(p, g, alpha, work)


def scatter_add(shape: tuple, idx, values):
    """A new array of ``shape`` holding zeros plus ``values[k]`` added at row ``idx[k]`` for
    every k, REPEATED indices accumulated (the embedding's backward, ``dW``).

    ``idx`` is a 1-D integer array of N valid row indices, ``values`` has shape
    ``(N, *shape[1:])``; the result has ``values``' dtype and device. Each library uses its own
    accumulating scatter (``np.add.at``, torch ``index_add_``, jax ``.at[].add``,
    ``cupyx.scatter_add``); dask and array_api_strict a sorted segment sum of standard calls
    (:func:`~xpnet.backend.base.scatter_add_sorted`). array-api-extra's ``at(x, idx).add`` does
    not accumulate repeats on numpy, torch or dask and is not used.
    """
    return library_of(values).scatter_add(namespace(values), tuple(shape), idx, values)


def time_scan(x):
    """``lax.scan`` while ``x`` is traced by jax (a compiled loop over time), else None."""
    return library_of(x).time_scan(x)


def materialize(x):
    """Cut lazy backends' graphs after an update (dask: persist) so steps do not pile up."""
    return library_of(x).materialize(x)


def materialize_all(arrays: list) -> list:
    """:func:`materialize` of arrays that share one graph (a step's gradients): computed once."""
    return library_of(arrays[0]).materialize_all(arrays) if arrays else []


# --------------------------------------------------------------------------- checks
def check_same_backend(x, like, where: str) -> None:
    """Raise a clear error when ``x`` is not on the namespace and device of ``like``."""
    if namespace(x) is namespace(like) and array_api_compat.device(x) == array_api_compat.device(like):
        return
    got, want = backend_name(x), backend_name(like)
    dev = device_label(array_api_compat.device(like))
    raise BackendMismatchError(
        f"{where} expects {want} arrays on device {dev}, got a "
        f"{got} array ({type(x).__name__}) on device {_device_or_unknown(x)}. "
        f"Convert it first: xpnet.to_backend(x, {want!r}, device={dev!r})"
    )


def _device_or_unknown(x) -> str:
    try:
        return device_label(array_api_compat.device(x))
    except Exception:
        return "?"
