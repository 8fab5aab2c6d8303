"""PyTorch: tensors on the CPU, CUDA devices or MPS; in-place updates fused; CUDA graphs on a
CUDA device."""

from __future__ import annotations

import contextlib
import re

import array_api_compat
import numpy as np

from .base import Library, SharedBuffer
from .dtypes import dtype_name, unsupported_dtype

# Host arrays up to this size go to a torch CUDA device through pinned memory, without a
# host sync; larger ones (a dataset, moved once) take the plain blocking copy, so that no
# large pinned buffer stays cached.
PINNED_UPLOAD_MAX = 16 * 2**20

_constants: dict[tuple, object] = {}


class Torch(Library):
    name = module = "torch"
    roots = ("torch",)
    api_module = "array_api_compat.torch"
    install = ("pip install 'xpnet[torch]' (CPU-only: pip install torch --index-url "
               "https://download.pytorch.org/whl/cpu)")
    cast = "x.float()"
    eager_note = " (torch.compile was measured slower than eager on the CPU; a CUDA graph needs a CUDA device)"
    compile_summary = ("CUDA graph on a CUDA device (--compile on only: not yet run on a GPU), eager on "
                       "the CPU")

    def owns(self, x) -> bool:
        return array_api_compat.is_torch_array(x)

    def devices(self):
        import torch

        out = ["cpu"]
        if torch.cuda.is_available():
            out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
        return out

    def parse_device(self, text, spec):
        import torch

        m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", text or "cpu")
        if m is None:
            raise self.bad_device(spec)
        kind, index = m.group(1), int(m.group(2) or 0)
        if kind == "cpu" and index == 0:
            return torch.device("cpu")
        if kind == "mps" and index == 0 and "mps" in self.devices():
            return torch.device("mps")
        if kind == "cuda" and not torch.cuda.is_available():
            raise self.bad_device(spec, f" (torch {torch.__version__} sees no usable CUDA device)", True)
        if kind == "cuda" and index < torch.cuda.device_count():
            return torch.device("cuda", index)
        raise self.bad_device(spec)

    def to_numpy(self, x):
        try:
            return x.detach().cpu().numpy()
        except TypeError as e:  # bfloat16, float8...: dtypes NumPy does not have
            raise unsupported_dtype(dtype_name(x.dtype), "to_numpy", self.cast) from e

    def upload(self, xp, dev, a, fresh):
        if dev.type == "cuda" and a.nbytes <= PINNED_UPLOAD_MAX:
            return _upload_async(a, dev)
        return xp.asarray(a, device=dev)

    def sub_scaled_(self, p, g, alpha, work):
        if not isinstance(alpha, (int, float)):  # a device scalar (a captured CUDA graph's
            p -= alpha * g  # learning rate): torch would read it back to the host as ``alpha=``
        else:
            p.sub_(g, alpha=alpha)  # one fused call, no temporary
        return None

    def constant(self, value, like):
        """A 0-d tensor of ``like``'s dtype on its device, made once per (dtype, device, value) and
        kept (outside inference mode, so autograd may use it later): array-api-compat's torch
        ``maximum`` would turn a Python scalar into a new tensor at every call (on CUDA a
        host-to-device copy per call)."""
        key = (like.dtype, like.device, value)
        c = _constants.get(key)
        if c is None:
            import torch

            if len(_constants) >= 256:  # one value per batch size: a handful in practice
                _constants.clear()
            with torch.inference_mode(False):
                c = _constants[key] = torch.asarray(value, dtype=like.dtype, device=like.device)
        return c

    def scatter_add(self, xp, shape, idx, values):
        import torch

        out = torch.zeros(shape, dtype=values.dtype, device=values.device)
        return out.index_add_(0, idx if idx.dtype in (torch.int32, torch.int64) else idx.long(), values)

    def shared_buffer(self, ref, total, comm):
        """On the CPU, MPI gets a zero-copy NumPy view of the flat tensor; elsewhere None."""
        if ref.device.type != "cpu":
            return None
        import torch

        flat = torch.empty(total, dtype=ref.dtype)
        host = flat.numpy()  # a view: MPI reads and writes the tensor's memory
        return SharedBuffer(flat, torch.mul, flat.zero_, lambda: comm.allreduce_(host))

    def graph_class(self, ref):
        return TorchGraph if ref.device.type == "cuda" else None


def _upload_async(a: np.ndarray, dev):
    """Copy ``a`` to torch CUDA device ``dev`` without blocking the host: into pinned memory
    (a copy, so the caller may reuse ``a``), then a non-blocking transfer. ``torch.asarray(a,
    device=cuda)`` would wait for the copy (Dropout's per-step mask, batch indices)."""
    import torch

    return torch.from_numpy(a).pin_memory().to(dev, non_blocking=True)


class TorchGraph:
    """One CUDA graph through ``torch.cuda.CUDAGraph`` (torch keeps a private pool for it)."""

    def __init__(self, ref):
        import torch

        self.torch = torch
        self.graph = torch.cuda.CUDAGraph()
        self.side = torch.cuda.Stream(ref.device)

    @contextlib.contextmanager
    def warmup(self):
        torch = self.torch
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            yield
        torch.cuda.current_stream().wait_stream(self.side)

    def capture(self, body) -> None:
        with self.torch.cuda.graph(self.graph):
            body()

    def replay(self) -> None:
        self.graph.replay()
