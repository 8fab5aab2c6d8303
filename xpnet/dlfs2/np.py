"""The second book's ``common.np``: ``from xpnet.dlfs2.np import *`` gives ``np`` and ``GPU``.

``np`` is the books' NumPy on the backend that ``XPNET_BACKEND`` chooses (:mod:`xpnet.dlfs1.np`:
CuPy, torch, jax, dask or NumPy itself), with ``np.random`` drawn on the host from one seeded
generator; ``GPU`` is :data:`xpnet.dlfs2.config.GPU`.
"""

from ..dlfs1 import np
from .config import GPU

__all__ = ["np", "GPU"]
