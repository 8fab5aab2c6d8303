"""The one backend seam: which array library, which device, which dtype.

This is the only module of xpnet that knows backends by name, reads ``XPNET_BACKEND``,
``XPNET_DEVICE`` and ``XPNET_DTYPE``, or imports cupy, torch, jax or dask. Everything
else receives arrays and takes the namespace from them (:func:`namespace`).

Choosing, from strongest to weakest:

1. explicit arguments (``get_backend("torch")``, ``mlp(..., backend="torch")``);
2. the in-code choice: ``set_backend(...)`` for the process, or ``with use_backend(...)``
   for a block (restored on exit);
3. the environment: ``XPNET_BACKEND``, ``XPNET_DEVICE``, ``XPNET_DTYPE``;
4. the default: numpy on the CPU in float32.

A backend is imported the first time it is chosen, never at ``import xpnet``; nothing
ever falls back silently to another backend.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import warnings
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
)

BACKENDS = ("numpy", "cupy", "torch", "jax", "dask", "array_api_strict")
DTYPES = ("float32", "float64")
DEFAULT_BACKEND = "numpy"
DEFAULT_DTYPE = "float32"

# pip command that installs each backend (the package's extras are named the same).
INSTALL_HINT = {
    "numpy": "pip install numpy",
    "cupy": "pip install 'xpnet[cuda12]' (CUDA 12) or 'xpnet[cuda13]' (CUDA 13)",
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
    except ImportError as e:
        raise BackendNotInstalledError(
            f"backend {name!r} is not installed ({e}); install it with: {INSTALL_HINT[name]}"
        ) from e


def _cupy_unusable_reason(cupy) -> str | None:
    """Why CuPy cannot run here (no driver, no device), or None when it can."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError, or a missing libcuda
        return f"no usable CUDA driver or device ({type(e).__name__}: {e})"
    if count == 0:
        return "the CUDA driver reports no GPU device"
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
        _import("dask")
        import array_api_compat.dask.array as ns

        return ns
    if name == "jax":
        import jax.numpy as ns

        return ns
    return mod  # array_api_strict is its own namespace


def _parse_device(name: str, spec: str | None) -> Any:
    """Turn the user's device string into the backend's own device object."""
    if name in ("numpy", "dask"):
        if spec not in (None, "cpu"):
            raise BackendError(f"backend {name!r} has only the device 'cpu'; got {spec!r}")
        return "cpu"
    if name == "torch":
        import torch

        try:
            dev = torch.device(spec or "cpu")
        except (RuntimeError, TypeError) as e:
            raise BackendError(f"bad torch device {spec!r}: {e}. Examples: 'cpu', 'cuda:0'") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch device {spec!r} asked for, but torch sees no usable CUDA device "
                f"(torch {torch.__version__}); use XPNET_DEVICE=cpu"
            )
        return dev
    if name == "cupy":
        import cupy

        text = (spec or "cuda:0").removeprefix("cuda").lstrip(":") or "0"
        if not text.isdigit():
            raise BackendError(f"bad cupy device {spec!r}; expected 'cuda', 'cuda:N' or 'N'")
        n = int(text)
        count = cupy.cuda.runtime.getDeviceCount()
        if n >= count:
            raise BackendError(f"cupy device {spec!r} asked for, but only {count} GPU(s) are visible")
        return cupy.cuda.Device(n)
    if name == "jax":
        import jax

        devices = jax.devices()
        if spec is None:
            return devices[0]
        platform, _, index = spec.partition(":")
        platform = {"cuda": "gpu"}.get(platform, platform)
        try:
            found = jax.devices(platform)
        except RuntimeError as e:
            raise BackendError(f"jax has no {platform!r} device ({e}); seen: {devices}") from e
        i = int(index or 0)
        if i >= len(found):
            raise BackendError(f"jax device {spec!r} asked for; only {found} exist")
        return found[i]
    # array_api_strict: CPU_DEVICE, device1, device2, no_float64, no_x64 (simulated devices)
    import array_api_strict as xs

    names = [d._device for d in xs.__array_namespace_info__().devices()]
    spec = spec or "CPU_DEVICE"
    if spec == "cpu":
        spec = "CPU_DEVICE"
    if spec not in names:
        raise BackendError(f"array_api_strict has no device {spec!r}; valid devices: {names}")
    return xs.Device(spec)


# --------------------------------------------------------------------------- the Backend
@dataclass(frozen=True)
class Backend:
    """A resolved choice: the namespace ``xp``, the ``device`` and the float ``dtype``."""

    name: str
    xp: Any = field(repr=False)
    device: Any
    dtype: Any
    dtype_name: str

    def asarray(self, a, dtype: Any = None):
        """Move a host (NumPy) array or Python scalar onto this backend's device.

        Float data take this backend's dtype unless ``dtype`` says otherwise; integer
        data keep their integer kind (labels).
        """
        a = np.asarray(a)
        if dtype is None:
            dtype = self.dtype if a.dtype.kind == "f" else None
        return _from_host(self.name, self.xp, self.device, a, dtype)

    def zeros(self, shape, dtype: Any = None):
        return self.asarray(np.zeros(shape), dtype)

    @property
    def supports_float64(self) -> bool:
        return _supports_float64(self.xp, self.device)

    def __str__(self) -> str:
        return f"{self.name} on {self.device} ({self.dtype_name})"


def _from_host(name: str, xp, dev, a: np.ndarray, dtype):
    if not a.flags.writeable:  # e.g. np.asarray of a jax array; torch warns on read-only memory
        a = a.copy()
    if name == "cupy":
        with dev:
            out = xp.asarray(a)
            return out if dtype is None else xp.astype(out, dtype)
    if name == "jax":
        import jax

        out = jax.device_put(a, dev)
        return out if dtype is None else xp.astype(out, dtype)
    if name == "dask":
        return xp.asarray(a if dtype is None else a.astype(host_dtype(dtype)))
    if name == "numpy":
        return a.astype(dtype, copy=True) if dtype is not None else a.copy()
    return xp.asarray(a, device=dev, dtype=dtype) if dtype is not None else xp.asarray(a, device=dev)


def host_dtype(dtype) -> np.dtype:
    """The NumPy dtype with the same name as any backend's dtype (torch.float32 -> float32)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def dtype_name(dtype) -> str:
    """The plain name of any backend's dtype, for messages: ``torch.float32`` -> ``float32``."""
    return host_dtype(dtype).name


def _supports_float64(xp, dev) -> bool:
    try:
        return "float64" in xp.__array_namespace_info__().dtypes(device=dev, kind="real floating")
    except (AttributeError, TypeError, ValueError):
        return True


_cache: dict[tuple, Backend] = {}
_lock = threading.Lock()
_chosen: list[dict] = []  # stack of in-code choices; the last one wins


def _env(var: str) -> str | None:
    value = os.environ.get(var, "").strip()
    return value or None


def resolve(backend: str | None = None, device: str | None = None, dtype: str | None = None) -> Backend:
    """Resolve a backend choice: explicit arguments, then in-code choice, then environment."""
    chosen = _chosen[-1] if _chosen else {}
    if backend is None:
        backend = chosen.get("backend") or _env("XPNET_BACKEND") or DEFAULT_BACKEND
        if device is None:
            device = chosen.get("device") if "backend" in chosen else _env("XPNET_DEVICE")
    if dtype is None:
        dtype = chosen.get("dtype") or _env("XPNET_DTYPE") or DEFAULT_DTYPE
    backend = backend.strip().lower().replace("-", "_")
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
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
                f"device {dev} of backend {backend!r} does not support float64; "
                "use XPNET_DTYPE=float32 (or dtype='float32')"
            )
        be = Backend(backend, xp, dev, getattr(xp, dtype), dtype)
        probe = be.asarray(np.zeros(1))
        be = Backend(backend, xp, array_api_compat.device(probe), be.dtype, dtype)
        _cache[key] = be
        return be


get_backend = resolve


def set_backend(backend: str | None = None, device: str | None = None, dtype: str | None = None) -> Backend:
    """Choose the backend for the whole process (beats the environment). Returns it."""
    be = resolve(backend, device, dtype)
    _chosen[:] = [_choice(backend, device, dtype)]
    return be


@contextlib.contextmanager
def use_backend(
    backend: str | None = None, device: str | None = None, dtype: str | None = None
) -> Iterator[Backend]:
    """``with use_backend("torch"):`` chooses a backend for a block and restores the previous one."""
    be = resolve(backend, device, dtype)
    _chosen.append(_choice(backend, device, dtype))
    try:
        yield be
    finally:
        _chosen.pop()


def _choice(backend, device, dtype) -> dict:
    c = {}
    if backend is not None:
        c["backend"], c["device"] = backend, device
    if dtype is not None:
        c["dtype"] = dtype
    return c


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
        return x.detach().cpu().numpy()
    if name == "dask":
        return np.asarray(x.compute())
    if name == "array_api_strict":
        import array_api_strict as xs

        return np.asarray(xs.asarray(x, device=xs.Device("CPU_DEVICE"), copy=True))
    return np.asarray(x)  # jax and anything with __array__


def to_backend(x, backend: str | Backend | None = None, device: str | None = None):
    """Move array ``x`` (any backend, any device) to ``backend``: e.g. CuPy -> NumPy.

    ``backend`` is a name (``"numpy"``, ``"cupy"``...) or a :class:`Backend`; ``None`` means
    the current choice. The dtype is kept.
    """
    be = backend if isinstance(backend, Backend) else resolve(backend, device)
    host = to_numpy(x)
    return _from_host(be.name, be.xp, be.device, host, None)


def from_host_like(a: np.ndarray, like) -> Any:
    """Put host array ``a`` on the namespace and device of array ``like`` (same dtype as ``a``)."""
    name = backend_name(like)
    xp = namespace(like)
    dev = array_api_compat.device(like)
    if name == "cupy":
        import cupy

        dev = cupy.cuda.Device(dev.id)
    return _from_host(name, xp, dev, np.asarray(a), None)


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
    ``p -= alpha * g``. Returns the buffer to pass as ``work`` next time (or None).
    A fresh temporary the size of a weight costs on the CPU about as much as the
    arithmetic (a new mapping that page-faults), hence the reuse.
    """
    kind, mod = _inplace_kind.get(type(p)) or _learn_inplace_kind(p)
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
    raise BackendMismatchError(
        f"{where} expects {want} arrays on device {array_api_compat.device(like)}, got a "
        f"{got} array ({type(x).__name__}) on device {_device_or_unknown(x)}. "
        f"Convert it first: xpnet.to_backend(x, {want!r})"
    )


def _device_or_unknown(x):
    try:
        return array_api_compat.device(x)
    except Exception:
        return "?"


# --------------------------------------------------------------------------- report
def installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULE[name]) is not None


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
        with warnings.catch_warnings():  # torch warns about its internal 'mkldnn' device type
            warnings.simplefilter("ignore")
            devices = [d for d in xp.__array_namespace_info__().devices() if _real_device(d)]
        info["devices"] = [_device_label(d) for d in devices]
        if name == "jax":  # float64 exists once x64 is on, which xpnet does when float64 is chosen
            info["float64"] = {_device_label(d): True for d in devices}
        else:
            info["float64"] = {_device_label(d): _supports_float64(xp, d) for d in devices}
        info["usable"] = True
    except BackendError as e:
        info["usable"] = False
        info["why"] = str(e)
    return info


def _real_device(d) -> bool:
    """Leave out what the inspection API lists but no user picks (None, torch's 'meta')."""
    return d is not None and str(d) != "meta"


def _device_label(d) -> str:
    """A device as a user types it for XPNET_DEVICE: 'cpu', 'cuda:0', 'device1'..."""
    text = str(d)
    if text.startswith("array_api_strict.Device("):
        return text.split("'")[1]
    return text


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
