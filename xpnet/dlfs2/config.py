"""The second book's ``common.config``: ``GPU``.

In the book, ``GPU = True`` swaps NumPy for CuPy. Here the backend is chosen by ``XPNET_BACKEND``
(and ``XPNET_DEVICE``; ``use_backend`` / ``set_backend`` in code), never by this flag: ``GPU``
only says whether the backend chosen when this module was first imported computes on a GPU
(``XPNET_BACKEND=cupy``, or torch / jax on a CUDA device). Setting it changes nothing.
"""

from __future__ import annotations

from ..backend import device_label, resolve

_GPU_KINDS = ("cuda", "gpu", "rocm")


def on_gpu(backend=None) -> bool:
    """Whether ``backend`` (default: the chosen one) computes on a GPU."""
    be = backend or resolve()
    return device_label(be.device).split(":")[0].lower() in _GPU_KINDS


GPU = on_gpu()
