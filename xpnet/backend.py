"""The one backend seam: which array library, which device, which dtype.

This is the only module of xpnet that knows backends by name, reads ``XPNET_BACKEND``,
``XPNET_DEVICE`` and ``XPNET_DTYPE``, or imports cupy, torch, jax or dask. Everything
else receives arrays and takes the namespace from them (:func:`namespace`).

Choosing, from strongest to weakest:

1. explicit arguments (``get_backend("torch")``, ``mlp(..., backend="torch")``);
2. the in-code choice: ``with use_backend(...)`` for a block (blocks nest: an inner block
   changes only what it names, and the choice is per thread / per context), then
   ``set_backend(...)``, the process default (a block in force overrides it; after the
   block ends, the ``set_backend`` choice is in force, even one made inside the block);
3. the environment: ``XPNET_BACKEND``, ``XPNET_DEVICE``, ``XPNET_DTYPE``;
4. the default: numpy on the CPU in float32.

A device goes with the backend it was given with: ``XPNET_DEVICE`` with ``XPNET_BACKEND``,
the device of ``set_backend``/``use_backend`` with that call's backend. Given without a
backend (``XPNET_DEVICE`` alone, ``use_backend(device=...)``), it is for whichever backend
is used. The backend a device is for always honours it: a device it cannot use is an error,
never ignored. A device given for another backend is used where it exists for this one
(``XPNET_BACKEND=cupy XPNET_DEVICE=cuda:1`` and ``get_backend("torch")``: torch on cuda:1),
and otherwise leaves this backend on its default device (``to_backend(x, "numpy")`` still
works under ``XPNET_BACKEND=torch XPNET_DEVICE=cuda:0``).

A backend is imported the first time it is chosen, never at ``import xpnet``; nothing
ever falls back silently to another backend.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from .errors import (
    BackendError,
    BackendMismatchError,
    BackendNotInstalledError,
    BackendUnavailableError,
    DTypeError,
)

BACKENDS = ("numpy", "cupy", "torch", "jax", "dask", "array_api_strict")
DTYPES = ("float32", "float64")
DEFAULT_BACKEND = "numpy"
DEFAULT_DTYPE = "float32"

# What CuPy needs besides the driver: the CUDA libraries it loads (NVRTC, cuBLAS...).
CUPY_INSTALL = (
    "pip install 'xpnet[cuda12]' (CUDA 12 driver) or 'xpnet[cuda13]' (CUDA 13 driver); these "
    "install cupy-cuda12x[ctk] / cupy-cuda13x[ctk], which bring the CUDA libraries CuPy loads, "
    "so only the NVIDIA driver is needed (or install a CUDA toolkit and plain cupy-cuda12x)"
)
# pip command that installs each backend (the package's extras are named the same).
INSTALL_HINT = {
    "numpy": "pip install numpy",
    "cupy": CUPY_INSTALL,
    "torch": "pip install 'xpnet[torch]' (CPU-only: pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu)",
    "jax": "pip install 'xpnet[jax]'",
    "dask": "pip install 'xpnet[dask]'",
    "array_api_strict": "pip install 'xpnet[strict]'",
}
_MODULE = {
    "numpy": "numpy",
    "cupy": "cupy",
    "torch": "torch",
    "jax": "jax",
    "dask": "dask",
    "array_api_strict": "array_api_strict",
}


# --------------------------------------------------------------------------- loading
def _import(name: str):
    try:
        return importlib.import_module(_MODULE[name])
    except Exception as e:  # a broken install (missing .so, CUDA error) must be a sentence too
        if isinstance(e, ImportError) and not installed(name):
            raise BackendNotInstalledError(
                f"backend {name!r} is not installed ({e}); install it with: {INSTALL_HINT[name]}"
            ) from e
        raise BackendUnavailableError(
            f"backend {name!r} is installed but fails to import ({type(e).__name__}: {e}); "
            f"reinstall it: {INSTALL_HINT[name]}"
        ) from e


def _cupy_unusable_reason(cupy) -> str | None:
    """Why CuPy cannot run here (no driver, no device, no CUDA libraries), or None.

    Counting devices is not enough: with the driver but without NVRTC or cuBLAS (CuPy 14
    raises ``DynamicLibNotFoundError``, CuPy 13 ``RuntimeError("CuPy failed to load
    libnvrtc...")``) the first kernel fails. So a real one runs: an elementwise kernel and
    a reduction (NVRTC) and a matmul (cuBLAS), read back once.
    """
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError, or a missing libcuda
        return f"no usable CUDA driver or device ({type(e).__name__}: {e})"
    if count == 0:
        return "the CUDA driver reports no GPU device"
    try:
        with cupy.cuda.Device(0):
            a = cupy.ones((2, 2), dtype=cupy.float32)
            got = float((a @ a + 1.0).sum())
    except Exception as e:
        return (f"a first CUDA kernel on GPU 0 failed ({type(e).__name__}: {e}); the CUDA "
                f"libraries CuPy loads are missing or broken. Install them: {CUPY_INSTALL}")
    if got != 12.0:
        return f"a first CUDA kernel on GPU 0 computed {got}, not 12.0: the GPU or driver is faulty"
    return None


def _load_namespace(name: str):
    """Import the backend and return its Array API namespace."""
    if name == "numpy":
        import array_api_compat.numpy as ns

        return ns
    mod = _import(name)
    if name == "cupy":
        reason = _cupy_unusable_reason(mod)
        if reason is not None:
            raise BackendUnavailableError(
                f"backend 'cupy' is installed but cannot run on this machine: {reason}. "
                "Use XPNET_BACKEND=numpy here, or run on a host with an NVIDIA GPU "
                "(`xpnet info` shows what was found)."
            )
        import array_api_compat.cupy as ns

        return ns
    if name == "torch":
        import array_api_compat.torch as ns

        return ns
    if name == "dask":
        import array_api_compat.dask.array as ns

        return ns
    if name == "jax":
        import jax.numpy as ns

        return ns
    return mod  # array_api_strict is its own namespace


# --------------------------------------------------------------------------- devices
def _valid_devices(name: str) -> list[str]:
    """The devices of backend ``name`` usable here, as a user types them for XPNET_DEVICE."""
    if name in ("numpy", "dask"):
        return ["cpu"]
    if name == "torch":
        import torch

        out = ["cpu"]
        if torch.cuda.is_available():
            out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
        return out
    if name == "cupy":
        import cupy

        try:
            return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]
        except Exception:
            return []
    if name == "jax":
        import jax

        return [device_label(d) for d in jax.devices()]
    import array_api_strict as xs

    info = xs.__array_namespace_info__()
    return [d._device for d in info.devices() if "int64" in info.dtypes(device=d, kind="signed integer")]


def _bad_device(name: str, spec: str, why: str = "", unavailable: bool = False):
    valid = _valid_devices(name)
    cls = BackendUnavailableError if unavailable else BackendError
    return cls(
        f"backend {name!r} has no device {spec!r}{why}; valid devices here: "
        f"{', '.join(valid) or '(none)'}. Set XPNET_DEVICE or --device to one of them "
        "(or leave it unset for the backend's first device)"
    )


def _parse_device(name: str, spec: str | None) -> Any:
    """Turn the user's device string into the backend's own device object.

    Every failure is a :class:`BackendError` naming the backend, the device given and the
    valid devices.
    """
    text = None if spec is None else spec.strip()
    if text == "":
        raise _bad_device(name, spec, " (the device name is empty)")
    if name in ("numpy", "dask"):
        if text not in (None, "cpu", "cpu:0"):
            raise _bad_device(name, spec, f": {name} arrays live in host memory only")
        return "cpu"
    if name == "torch":
        import torch

        m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", text or "cpu")
        if m is None:
            raise _bad_device(name, spec)
        kind, index = m.group(1), int(m.group(2) or 0)
        if kind == "cpu" and index == 0:
            return torch.device("cpu")
        if kind == "mps" and index == 0 and "mps" in _valid_devices(name):
            return torch.device("mps")
        if kind == "cuda" and not torch.cuda.is_available():
            raise _bad_device(name, spec, f" (torch {torch.__version__} sees no usable CUDA device)", True)
        if kind == "cuda" and index < torch.cuda.device_count():
            return torch.device("cuda", index)
        raise _bad_device(name, spec)
    if name == "cupy":
        import cupy

        m = re.fullmatch(r"(?:cuda(?::(\d+))?|(\d+))", text or "cuda:0")
        if m is None:
            raise _bad_device(name, spec, ": expected 'cuda', 'cuda:N' or 'N'")
        n = int(m.group(1) or m.group(2) or 0)
        if n >= cupy.cuda.runtime.getDeviceCount():
            raise _bad_device(name, spec)
        return cupy.cuda.Device(n)
    if name == "jax":
        import jax

        if text is None:
            return jax.devices()[0]
        m = re.fullmatch(r"(cpu|gpu|cuda|rocm|tpu)(?::(\d+))?", text)
        if m is None:
            raise _bad_device(name, spec)
        try:
            found = jax.devices({"cuda": "gpu", "rocm": "gpu"}.get(m.group(1), m.group(1)))
        except RuntimeError as e:
            raise _bad_device(name, spec, f" ({e})") from None
        index = int(m.group(2) or 0)
        if index >= len(found):
            raise _bad_device(name, spec)
        return found[index]
    # array_api_strict: CPU_DEVICE, device1, device2, no_float64 (simulated devices)
    import array_api_strict as xs

    text = {None: "CPU_DEVICE", "cpu": "CPU_DEVICE"}.get(text, text)
    if text not in _valid_devices(name):
        known = [d._device for d in xs.__array_namespace_info__().devices()]
        why = " (it has no int64, which xpnet needs for labels)" if text in known else ""
        raise _bad_device(name, spec, why)
    return xs.Device(text)


def device_label(d) -> str:
    """A device as a user types it for XPNET_DEVICE: 'cpu', 'cuda:0', 'device1'...

    CuPy's devices print as ``<CUDA Device 0>``, which XPNET_DEVICE does not take.
    """
    if type(d).__module__.split(".")[0] == "cupy" and hasattr(d, "id"):
        return f"cuda:{d.id}"
    text = str(d)
    if text.startswith("array_api_strict.Device("):
        return text.split("'")[1]
    return text


# --------------------------------------------------------------------------- the Backend
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
        a = _host_copy(a, "Backend.asarray")
        if dtype is None:
            dtype = self.dtype if a.dtype.kind == "f" else None
        return _from_host(self.name, self.xp, self.device, a, dtype)

    def zeros(self, shape, dtype: Any = None):
        return self.asarray(np.zeros(shape), dtype)

    def activate(self):
        """``with be.activate():`` makes this backend's device the current one for the block.

        CuPy runs elementwise kernels, matmuls, reductions and ``*_like`` on its *current*
        device, whatever device the arrays are on (array-api-compat ignores ``device=`` for
        those); so work on ``cuda:1`` must run inside this block. On every other backend
        the device travels with the arrays and this is a no-op.
        """
        if self.name == "cupy":
            return self.device  # a cupy.cuda.Device is a context manager
        return contextlib.nullcontext(self)

    @property
    def supports_float64(self) -> bool:
        return _supports_float64(self.xp, self.device)

    def __str__(self) -> str:
        return f"{self.name} on {device_label(self.device)} ({self.dtype_name})"


def _from_host(name: str, xp, dev, a: np.ndarray, dtype):
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
        if name == "cupy":
            with dev:
                return xp.asarray(a)
        if name == "jax":
            import jax

            if a.dtype.itemsize == 8 and a.dtype.kind in "fc":  # keep float64: no silent float32
                jax.config.update("jax_enable_x64", True)
            return jax.device_put(a, dev)
        if name == "dask":
            return xp.asarray(a)
        if name == "numpy":
            return a.copy() if a is original else a  # never the caller's own memory
        if name == "torch" and dev.type == "cuda" and a.nbytes <= PINNED_UPLOAD_MAX:
            return _torch_upload_async(a, dev)
        return xp.asarray(a, device=dev)
    except (TypeError, ValueError) as e:
        raise DTypeError(
            f"backend {name!r} on device {device_label(dev)} cannot hold an array of dtype "
            f"{a.dtype} ({e}); cast it to a dtype it has first (float32, int32...)"
        ) from e


# Host arrays up to this size go to a torch CUDA device through pinned memory, without a
# host sync; larger ones (a dataset, moved once) take the plain blocking copy, so that no
# large pinned buffer stays cached.
PINNED_UPLOAD_MAX = 16 * 2**20


def _torch_upload_async(a: np.ndarray, dev):
    """Copy ``a`` to torch CUDA device ``dev`` without blocking the host: into pinned memory
    (a copy, so the caller may reuse ``a``), then a non-blocking transfer. ``torch.asarray(a,
    device=cuda)`` would wait for the copy (Dropout's per-step mask, batch indices)."""
    import torch

    return torch.from_numpy(a).pin_memory().to(dev, non_blocking=True)


def host_dtype(dtype) -> np.dtype:
    """The NumPy dtype with the same name as any backend's dtype (torch.float32 -> float32).

    A dtype NumPy lacks (torch's bfloat16 where ml_dtypes is not loaded) raises
    :class:`DTypeError`, with the cast that fixes it."""
    try:
        return np.dtype(dtype)
    except TypeError:
        pass
    name = dtype_name(dtype)
    try:
        return np.dtype(name)
    except TypeError:
        raise dtype_error(name, "converting to a NumPy dtype") from None


_names: dict = {}


def dtype_name(dtype) -> str:
    """The plain name of any backend's dtype, for messages: ``torch.float32`` -> ``float32``.
    Never raises (also for dtypes NumPy lacks, such as torch's bfloat16)."""
    key = (type(dtype), dtype)  # the type first: no cross-library dtype comparison
    name = _names.get(key)
    if name is None:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]
        _names[key] = name
    return name


_CASTS = {"torch": "x.float()", "numpy": "x.astype(np.float32)", "jax": "x.astype(jnp.float32)",
          "cupy": "x.astype(cupy.float32)"}


def dtype_error(name: str, where: str, library: str | None = None) -> DTypeError:
    """The error for float dtype ``name`` that xpnet does not compute in (float16, bfloat16...)."""
    cast = _CASTS.get(library, "xp.astype(x, xp.float32)")
    also = "" if cast.startswith("xp.") else ", or xp.astype(x, xp.float32) in any library"
    return DTypeError(f"{where}: dtype {name} is not supported; xpnet computes in float32 or float64 "
                      f"only (not in float16 or bfloat16). Cast it first: {cast}{also}")


def check_float_dtype(dtype, where: str, library: str | None = None) -> None:
    """Raise :class:`DTypeError` for a float dtype other than float32 and float64 (float16,
    bfloat16, float8..., longdouble), naming ``where``, the dtype and the cast that fixes it.
    Other kinds (integers, bool) pass: their callers say what they take."""
    name = dtype_name(dtype)
    if name not in DTYPES and name.startswith(("float", "bfloat")):
        raise dtype_error(name, where, library)


def _host_copy(x, where: str) -> np.ndarray:
    """``to_numpy(x)`` for the functions that move data between backends, refusing float
    dtypes xpnet does not compute in before anything is copied."""
    dt = getattr(x, "dtype", None)
    if dt is not None:
        check_float_dtype(dt, where, backend_name(x))
    return to_numpy(x)


def _supports_float64(xp, dev) -> bool:
    try:
        return "float64" in xp.__array_namespace_info__().dtypes(device=dev, kind="real floating")
    except (AttributeError, TypeError, ValueError):
        return True


# --------------------------------------------------------------------------- choosing
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
        _load_namespace(backend)
        _parse_device(backend, spec)
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
        xp = _load_namespace(backend)
        dev = _parse_device(backend, device)
        if dtype == "float64" and backend == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)  # otherwise float64 is silently float32
        if dtype == "float64" and not _supports_float64(xp, dev):
            raise BackendError(
                f"device {device_label(dev)} of backend {backend!r} does not support float64; "
                "use XPNET_DTYPE=float32 (or dtype='float32')"
            )
        be = Backend(backend, xp, dev, getattr(xp, dtype), dtype)
        probe = be.asarray(np.zeros(1))
        be = Backend(backend, xp, array_api_compat.device(probe), be.dtype, dtype)
        _cache[key] = be
        return be


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


# --------------------------------------------------------------------------- arrays
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


device = array_api_compat.device


def backend_name(x) -> str:
    """The xpnet name of the library that made array ``x`` (for messages and conversion)."""
    c = array_api_compat
    for name, test in (
        ("numpy", c.is_numpy_array),
        ("cupy", c.is_cupy_array),
        ("torch", c.is_torch_array),
        ("jax", c.is_jax_array),
        ("dask", c.is_dask_array),
    ):
        if test(x):
            return name
    if type(x).__module__.startswith("array_api_strict"):
        return "array_api_strict"
    return type(x).__module__.split(".")[0] or type(x).__name__


def to_numpy(x) -> np.ndarray:
    """Copy any backend's array to a host NumPy array (CuPy and GPU torch included)."""
    name = backend_name(x)
    if name == "numpy":
        return np.asarray(x)
    if name == "cupy":
        return x.get()
    if name == "torch":
        try:
            return x.detach().cpu().numpy()
        except TypeError as e:  # bfloat16, float8...: dtypes NumPy does not have
            raise dtype_error(dtype_name(x.dtype), "to_numpy", name) from e
    if name == "dask":
        return np.asarray(x.compute())
    if name == "array_api_strict":
        import array_api_strict as xs

        return np.asarray(xs.asarray(x, device=xs.Device("CPU_DEVICE"), copy=True))
    return np.asarray(x)  # jax, Python scalars and lists, anything with __array__


def to_backend(x, backend: str | Backend | None = None, device: str | None = None):
    """Move array ``x`` (any backend, any device) to ``backend``: e.g. CuPy -> NumPy.

    ``backend`` is a name (``"numpy"``, ``"cupy"``...) or a :class:`Backend`; ``None`` means
    the current choice. The dtype is kept; float dtypes other than float32 and float64
    (float16, bfloat16) raise :class:`DTypeError`.
    """
    be = backend if isinstance(backend, Backend) else resolve(backend, device)
    return _from_host(be.name, be.xp, be.device, _host_copy(x, "to_backend"), None)


def from_host_like(a: np.ndarray, like) -> Any:
    """Put array ``a`` (host, or any backend's) on the namespace and device of array
    ``like``, keeping the dtype of ``a``."""
    name = backend_name(like)
    xp = namespace(like)
    dev = array_api_compat.device(like)
    if name == "cupy":
        import cupy

        dev = cupy.cuda.Device(dev.id)
    return _from_host(name, xp, dev, _host_copy(a, "from_host_like"), None)


_constants: dict[tuple, Any] = {}


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
    if not array_api_compat.is_torch_array(like):
        return value
    key = (like.dtype, like.device, value)
    c = _constants.get(key)
    if c is None:
        import torch

        if len(_constants) >= 256:  # one value per batch size: a handful in practice
            _constants.clear()
        with torch.inference_mode(False):
            c = _constants[key] = torch.asarray(value, dtype=like.dtype, device=like.device)
    return c


def device_context(x):
    """``with device_context(x):`` runs the block with array ``x``'s device current: what
    :meth:`Backend.activate` does, for code that holds arrays, not a Backend (the trainer:
    ``with device_context(next(iter(model.params.values()))):`` around an epoch). A no-op
    everywhere but CuPy."""
    if array_api_compat.is_cupy_array(x):
        return x.device  # a cupy.cuda.Device
    return contextlib.nullcontext()


def is_writeable(x) -> bool:
    """True where ``x -= y`` really changes ``x`` in place (not on jax or dask).

    array-api-compat calls dask arrays writeable (they take ``x[i] = v``), but their
    ``-=`` builds a new array and rebinds the name, so dask is excluded here.
    """
    return array_api_compat.is_writeable_array(x) and not array_api_compat.is_dask_array(x)


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
    kind, mod = _inplace_kind.get(type(p)) or _learn_inplace_kind(p)
    if kind == "fused" and not isinstance(alpha, (int, float)):  # a device scalar (a captured CUDA graph's
        p -= alpha * g  # learning rate): torch would read it back to the host as ``alpha=``
        return None
    if kind == "fused":
        p.sub_(g, alpha=alpha)
        return None
    if kind == "out":
        if work is None or work.shape != p.shape or work.dtype != p.dtype:
            work = mod.empty_like(p)
        mod.multiply(g, alpha, out=work)
        p -= work
        return work
    p -= alpha * g
    return None


_inplace_kind: dict[type, tuple] = {}


def _learn_inplace_kind(p) -> tuple:
    """How an array type takes ``p -= alpha * g``: 'fused' (torch ``sub_``), 'out' (ufuncs
    with ``out=``: numpy, cupy, with their module) or 'plain'."""
    mod = None
    if array_api_compat.is_torch_array(p):
        kind = "fused"
    elif array_api_compat.is_numpy_array(p) or array_api_compat.is_cupy_array(p):
        kind, mod = "out", sys.modules[type(p).__module__.split(".")[0]]
    else:
        kind = "plain"
    _inplace_kind[type(p)] = (kind, mod)
    return kind, mod


def materialize(x):
    """Cut lazy backends' graphs after an update (dask: persist) so steps do not pile up."""
    if array_api_compat.is_dask_array(x):
        return x.persist()
    return x


def to_float(x) -> float:
    """Read a 0-d array back to a Python float (one host sync)."""
    return float(to_numpy(x))


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


# --------------------------------------------------------------------------- report
def installed(name: str) -> bool:
    mod = _MODULE[name]
    return mod in sys.modules or importlib.util.find_spec(mod) is not None


def describe(name: str) -> dict:
    """What ``xpnet info`` prints for one backend: installed? version, devices, float64, why not."""
    info: dict[str, Any] = {"backend": name, "installed": installed(name)}
    if not info["installed"]:
        info["why"] = f"not installed: {INSTALL_HINT[name]}"
        return info
    mod = importlib.import_module(_MODULE[name])
    info["version"] = getattr(mod, "__version__", "?")
    if name == "cupy":
        reason = _cupy_unusable_reason(mod)
        try:
            info["cuda_runtime"] = mod.cuda.runtime.runtimeGetVersion()
            info["cuda_driver"] = mod.cuda.runtime.driverGetVersion()
        except Exception as e:
            info["cuda_driver"] = f"unavailable ({type(e).__name__})"
        if reason is not None:
            info["usable"] = False
            info["why"] = reason
            return info
    try:
        xp = _load_namespace(name)
        labels = _valid_devices(name)
        info["devices"] = labels
        # jax: float64 exists once x64 is on, which xpnet does when float64 is chosen
        info["float64"] = {d: name == "jax" or _supports_float64(xp, _parse_device(name, d)) for d in labels}
        info["usable"] = True
    except BackendError as e:
        info["usable"] = False
        info["why"] = str(e)
    return info


def available() -> list[str]:
    """Backends that are installed (cupy only when a CUDA device is usable)."""
    out = []
    for name in BACKENDS:
        if not installed(name):
            continue
        if name == "cupy":
            try:
                _load_namespace("cupy")
            except BackendError:
                continue
        out.append(name)
    return out
