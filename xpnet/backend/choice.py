"""Which backend, device and dtype: explicit arguments, then the in-code choice (``use_backend``
blocks, then ``set_backend``), then ``XPNET_BACKEND`` / ``XPNET_DEVICE`` / ``XPNET_DTYPE``, then
numpy on the CPU in float32 (the rules in full: :mod:`xpnet.backend`)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from ..errors import BackendError
from .arrays import from_host, host_copy
from .dtypes import DEFAULT_DTYPE, DTYPES, supports_float64
from .libraries import BACKENDS, DEFAULT_BACKEND, device_label, library, parse_device


@dataclass(frozen=True)
class Backend:
    """A resolved choice: the namespace ``xp``, the ``device`` and the float ``dtype``.

    Hashable (by name, device label and dtype), also on CuPy, whose devices are not.
    """

    name: str
    xp: Any = field(repr=False)
    device: Any
    dtype: Any
    dtype_name: str

    def __hash__(self) -> int:
        return hash((self.name, device_label(self.device), self.dtype_name))

    def asarray(self, a, dtype: Any = None):
        """Move data onto this backend's device: a NumPy array, a Python scalar or list, or
        an array of any backend (a device array is copied to the host, then moved).

        Float data take this backend's dtype unless ``dtype`` says otherwise (the cast is
        done on the host, so only the final bytes travel); integer and bool data keep
        their kind (labels). Strings, Python objects and float dtypes other than float32 and
        float64 (float16, bfloat16: :func:`check_float_dtype`) raise :class:`DTypeError`.
        """
        a = host_copy(a, "Backend.asarray")
        if dtype is None:
            dtype = self.dtype if a.dtype.kind == "f" else None
        return from_host(self.name, self.xp, self.device, a, dtype)

    def zeros(self, shape, dtype: Any = None):
        return self.asarray(np.zeros(shape), dtype)

    def activate(self):
        """``with be.activate():`` makes this backend's device the current one for the block.

        CuPy runs elementwise kernels, matmuls, reductions and ``*_like`` on its *current*
        device, whatever device the arrays are on (array-api-compat ignores ``device=`` for
        those); so work on ``cuda:1`` must run inside this block. On every other backend
        the device travels with the arrays and this is a no-op.
        """
        return library(self.name).activate(self.device, self)

    @property
    def writes_in_place(self) -> bool:
        """True where ``x -= y`` and ``x[index] = v`` change this backend's arrays themselves
        (numpy, torch, cupy); False where they cannot (jax, dask) or where NumPy's indexing is
        refused (array_api_strict)."""
        return library(self.name).writes_in_place

    @property
    def numpy_methods(self) -> bool:
        """True where this backend's arrays have NumPy's methods (numpy, cupy): code written for
        NumPy calls ``x.astype('f')``, ``x.max(axis=1)``, ``x.size`` on them unchanged."""
        return library(self.name).numpy_methods

    @property
    def supports_float64(self) -> bool:
        return supports_float64(self.xp, self.device)

    def __str__(self) -> str:
        return f"{self.name} on {device_label(self.device)} ({self.dtype_name})"


_cache: dict[tuple, Backend] = {}
_lock = threading.Lock()
_process: dict = {}  # set_backend's choice: the process default, shared by every thread (replaced whole)
_blocks: contextvars.ContextVar[tuple[dict, ...]] = contextvars.ContextVar("xpnet_use_backend", default=())


def _env(var: str) -> str | None:
    value = os.environ.get(var, "").strip()
    return value or None


def _backend_name(name: str, where: str = "") -> str:
    norm = name.strip().lower().replace("-", "_")
    if norm not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}{where}; valid backends: {', '.join(BACKENDS)}")
    return norm


def _in_code() -> dict:
    """The in-code choice: ``set_backend``'s, then each ``use_backend`` block, inner last.

    Each changes only what it names. ``owner`` is the backend a device was given with
    (None: given alone, for whichever backend is used).
    """
    merged: dict = {}
    for layer in (_process, *_blocks.get()):
        if layer.get("backend"):
            merged.update(backend=layer["backend"], device=layer.get("device"), owner=layer["backend"])
        elif layer.get("device"):
            merged.update(device=layer["device"], owner=merged.get("backend"))
        if layer.get("dtype"):
            merged["dtype"] = layer["dtype"]
    return merged


def _fits(backend: str, spec: str) -> bool:
    try:
        library(backend).load()
        parse_device(backend, spec)
        return True
    except BackendError:
        return False


def _device_for(backend: str, code: dict) -> str | None:
    """The device to use for ``backend`` when none is given explicitly (see the module doc)."""
    if code.get("device"):
        spec, owner = code["device"], code.get("owner")
    elif _env("XPNET_DEVICE"):
        spec, owner = _env("XPNET_DEVICE"), _env("XPNET_BACKEND")
        owner = owner and _backend_name(owner, " in XPNET_BACKEND")
    else:
        return None
    if owner is None or owner == backend or _fits(backend, spec):
        return spec
    return None


def resolve(backend: str | None = None, device: str | None = None, dtype: str | None = None) -> Backend:
    """Resolve a backend choice: explicit arguments, then in-code choice, then environment."""
    code = _in_code()
    if backend is None:
        backend = code.get("backend") or _env("XPNET_BACKEND") or DEFAULT_BACKEND
    backend = _backend_name(backend)
    if device is None:
        device = _device_for(backend, code)
    elif not isinstance(device, str):
        device = device_label(device)  # a torch.device, a cupy Device...
    if dtype is None:
        dtype = code.get("dtype") or _env("XPNET_DTYPE") or DEFAULT_DTYPE
    if dtype not in DTYPES:
        raise BackendError(f"unknown dtype {dtype!r}; valid float dtypes: {', '.join(DTYPES)}")
    key = (backend, device, dtype)
    with _lock:
        if key in _cache:
            return _cache[key]
        _cache[key] = be = _make(backend, device, dtype)
        return be


def _make(backend: str, device: str | None, dtype: str) -> Backend:
    lib = library(backend)
    xp = lib.load()
    dev = parse_device(backend, device)
    if dtype == "float64":
        lib.enable_float64()
        if not supports_float64(xp, dev):
            raise BackendError(
                f"device {device_label(dev)} of backend {backend!r} does not support float64; "
                "use XPNET_DTYPE=float32 (or dtype='float32')"
            )
    be = Backend(backend, xp, dev, getattr(xp, dtype), dtype)
    probe = be.asarray(np.zeros(1))
    return Backend(backend, xp, array_api_compat.device(probe), be.dtype, dtype)


get_backend = resolve


def _choice(backend, device, dtype) -> dict:
    return {"backend": backend and _backend_name(backend), "device": device, "dtype": dtype}


def set_backend(backend: str | None = None, device: str | None = None, dtype: str | None = None) -> Backend:
    """Choose the process default (beats the environment; a ``use_backend`` block in force
    beats it, and it is in force again when the block ends). Returns the Backend."""
    global _process
    be = resolve(backend, device, dtype)
    _process = _choice(backend, device, dtype)  # one assignment: other threads see old or new
    return be


@contextlib.contextmanager
def use_backend(
    backend: str | None = None, device: str | None = None, dtype: str | None = None
) -> Iterator[Backend]:
    """``with use_backend("torch"):`` chooses a backend for a block of this thread (or
    context). Blocks nest: ``use_backend(dtype="float64")`` inside it keeps torch."""
    be = resolve(backend, device, dtype)
    token = _blocks.set((*_blocks.get(), _choice(backend, device, dtype)))
    try:
        yield be
    finally:
        _blocks.reset(token)


def to_backend(x, backend: str | Backend | None = None, device: str | None = None):
    """Move array ``x`` (any backend, any device) to ``backend``: e.g. CuPy -> NumPy.

    ``backend`` is a name (``"numpy"``, ``"cupy"``...) or a :class:`Backend`; ``None`` means
    the current choice. The dtype is kept; float dtypes other than float32 and float64
    (float16, bfloat16) raise :class:`DTypeError`.
    """
    be = backend if isinstance(backend, Backend) else resolve(backend, device)
    return from_host(be.name, be.xp, be.device, host_copy(x, "to_backend"), None)
