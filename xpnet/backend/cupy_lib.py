"""CuPy: arrays on NVIDIA GPUs. Work runs on the *current* device, so a device is entered
around it; the first kernel is run before CuPy counts as usable; NCCL sums the ranks' gradients
on the GPU; the step can be captured as a CUDA graph."""

from __future__ import annotations

import contextlib
import re

import array_api_compat
import numpy as np

from ..errors import BackendUnavailableError, ConfigError
from .base import Library, SharedBuffer, sub_scaled_out

# What CuPy needs besides the driver: the CUDA libraries it loads (NVRTC, cuBLAS...).
CUPY_INSTALL = (
    "pip install 'xpnet[cuda12]' (CUDA 12 driver) or 'xpnet[cuda13]' (CUDA 13 driver); these "
    "install cupy-cuda12x[ctk] / cupy-cuda13x[ctk], which bring the CUDA libraries CuPy loads, "
    "so only the NVIDIA driver is needed (or install a CUDA toolkit and plain cupy-cuda12x)"
)


def unusable_reason(cupy) -> str | None:
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


def nccl_status() -> str:
    """How CuPy gradients are reduced here: 'nccl <version>', or why through the host."""
    try:
        from cupy.cuda import nccl
    except ImportError as e:
        return f"through the host (cupy.cuda.nccl not importable: {e})"
    except Exception as e:  # a broken CUDA install: say so, never fail `xpnet info`
        return f"through the host ({type(e).__name__}: {e})"
    if not getattr(nccl, "available", True):
        return "through the host (CuPy was built without NCCL)"
    return f"nccl {nccl.get_version()}"


class Cupy(Library):
    name = module = "cupy"
    roots = ("cupy",)
    api_module = "array_api_compat.cupy"
    install = CUPY_INSTALL
    cast = "x.astype(cupy.float32)"
    numpy_methods = True
    listed_when_installed = False
    compile_summary = "CUDA graph (--compile on only: not yet run on a GPU)"

    def load(self):
        reason = unusable_reason(self.import_module())
        if reason is not None:
            raise BackendUnavailableError(
                f"backend 'cupy' is installed but cannot run on this machine: {reason}. "
                "Use XPNET_BACKEND=numpy here, or run on a host with an NVIDIA GPU "
                "(`xpnet info` shows what was found)."
            )
        return super().load()

    def report(self, mod, info):
        reason = unusable_reason(mod)
        try:
            info["cuda_runtime"] = mod.cuda.runtime.runtimeGetVersion()
            info["cuda_driver"] = mod.cuda.runtime.driverGetVersion()
        except Exception as e:
            info["cuda_driver"] = f"unavailable ({type(e).__name__})"
        return reason

    def owns(self, x) -> bool:
        return array_api_compat.is_cupy_array(x)

    def devices(self):
        import cupy

        try:
            return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]
        except Exception:
            return []

    def parse_device(self, text, spec):
        import cupy

        m = re.fullmatch(r"(?:cuda(?::(\d+))?|(\d+))", text or "cuda:0")
        if m is None:
            raise self.bad_device(spec, ": expected 'cuda', 'cuda:N' or 'N'")
        n = int(m.group(1) or m.group(2) or 0)
        if n >= cupy.cuda.runtime.getDeviceCount():
            raise self.bad_device(spec)
        return cupy.cuda.Device(n)

    def label(self, d):
        """CuPy's devices print as ``<CUDA Device 0>``, which XPNET_DEVICE does not take."""
        if type(d).__module__.split(".")[0] == "cupy" and hasattr(d, "id"):
            return f"cuda:{d.id}"
        return None

    def to_numpy(self, x):
        return x.get()

    def upload(self, xp, dev, a, fresh):
        with dev:  # array-api-compat ignores ``device=`` for creation on CuPy
            return xp.asarray(a)

    def like_device(self, dev):
        import cupy

        return cupy.cuda.Device(dev.id)

    def activate(self, dev, value=None):
        """CuPy runs elementwise kernels, matmuls, reductions and ``*_like`` on its *current*
        device, whatever device the arrays are on: a ``cupy.cuda.Device`` is a context manager."""
        return dev

    def context_of(self, x):
        return x.device  # a cupy.cuda.Device

    def sub_scaled_(self, p, g, alpha, work):
        import cupy

        return sub_scaled_out(cupy, p, g, alpha, work)

    def scatter_add(self, xp, shape, idx, values):
        import cupy
        import cupyx

        with values.device:
            out = cupy.zeros(shape, dtype=values.dtype)
            cupyx.scatter_add(out, idx, values)  # atomicAdd: repeated indices accumulate
        return out

    def shared_buffer(self, ref, total, comm):
        """The flat buffer on the GPU, summed by NCCL on the current stream (the unique id goes
        over MPI); None without NCCL."""
        if not nccl_status().startswith("nccl"):
            return None
        import cupy
        from cupy.cuda import nccl

        types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                 np.dtype(np.float16): nccl.NCCL_FLOAT16}
        if np.dtype(ref.dtype) not in types:
            raise ConfigError(f"NCCL reduces float16/32/64 gradients, got {ref.dtype}; use --dtype float32")
        uid = comm.comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None, root=0)
        with ref.device:
            nc = nccl.NcclCommunicator(comm.size, uid, comm.rank)
            flat = cupy.empty(total, dtype=ref.dtype)
        nccl_type = types[np.dtype(ref.dtype)]

        def reduce():
            ptr = flat.data.ptr
            nc.allReduce(ptr, ptr, total, nccl_type, nccl.NCCL_SUM, cupy.cuda.get_current_stream().ptr)

        return SharedBuffer(flat, cupy.multiply, lambda: flat.fill(0), reduce)

    def graph_class(self, ref):
        return CupyGraph


class CupyGraph:
    """One CUDA graph through CuPy's stream capture, with a memory pool of its own: the
    temporaries the captured kernels write stay reserved for the graph (no other allocation
    can be handed their addresses while it may replay)."""

    def __init__(self, ref):
        import cupy

        self.cupy = cupy
        self.pool = cupy.cuda.MemoryPool()
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.graph = None

    @contextlib.contextmanager
    def warmup(self):
        """The block runs on the capture stream and allocates from the graph's pool, so the
        capture that follows finds every block it needs already there."""
        cp = self.cupy
        cp.cuda.get_current_stream().synchronize()  # the inputs written on the current stream
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            yield
        self.stream.synchronize()

    def capture(self, body) -> None:
        cp = self.cupy
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            self.stream.begin_capture()  # relaxed mode: the pool may still grow during capture
            try:
                body()
            finally:
                self.graph = self.stream.end_capture()

    def replay(self) -> None:
        self.graph.launch(self.cupy.cuda.get_current_stream())  # in order with the copies around it
