"""The GPU side: CUDA-event timing, whether a GPU can run here, and the GPU contenders."""

from __future__ import annotations

from .. import backend as B
from .contenders import Contender, TorchNative, XPNet, XPNetCompiled


class CudaTimer:
    """Time ``k`` steps with CUDA events recorded on the current stream (no host sync inside)."""

    def __init__(self, lib: str):
        self.lib = lib

    def run(self, c: Contender, start: int, k: int, nb: int) -> float:
        if self.lib == "cupy":
            import cupy

            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            for i in range(start, start + k):
                c.step(i % nb)
            e1.record()
            e1.synchronize()
            return cupy.cuda.get_elapsed_time(e0, e1) / 1e3
        import torch

        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for i in range(start, start + k):
            c.step(i % nb)
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1) / 1e3


def gpu_unavailable_reason() -> str | None:
    """None when CuPy can run on a CUDA device here; otherwise why not."""
    if not B.installed("cupy"):
        return "cupy is not installed"
    try:
        B.resolve("cupy")
    except B.BackendError as e:
        return str(e)
    return None


def torch_cuda_available() -> bool:
    if not B.installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def gpu_makers(cupy: bool, torch_cuda: bool) -> dict:
    """The GPU contenders that can be built here, by name: xpnet on CuPy and on torch CUDA, each
    eager and as a CUDA graph (:class:`xpnet.compile.GraphStep`), and torch native CUDA."""
    makers = {}
    if cupy:
        makers["xpnet[cupy]"] = lambda w, X, T: XPNet(w, X, T, "cupy")
        makers["xpnet[cupy] CUDA graph step"] = lambda w, X, T: XPNetCompiled(w, X, T, "cupy")
    if torch_cuda:
        makers["xpnet[torch cuda:0]"] = lambda w, X, T: XPNet(w, X, T, "torch", "cuda:0")
        makers["xpnet[torch cuda:0] CUDA graph step"] = lambda w, X, T: XPNetCompiled(w, X, T, "torch",
                                                                                      device="cuda:0")
        makers["torch native CUDA"] = lambda w, X, T: TorchNative(w, X, T, "cuda")
    return makers


