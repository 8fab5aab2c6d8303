"""NumPy: the default library, on the host."""

from __future__ import annotations

import array_api_compat
import numpy as np

from .base import Library, SharedBuffer, sub_scaled_out


class Numpy(Library):
    name = module = "numpy"
    roots = ("numpy",)
    api_module = "array_api_compat.numpy"
    install = "pip install numpy"
    cast = "x.astype(np.float32)"
    numpy_methods = True
    numpy_functions = "numpy"

    def owns(self, x) -> bool:
        return array_api_compat.is_numpy_array(x)

    def upload(self, xp, dev, a, fresh):
        return a if fresh else a.copy()  # never the caller's own memory

    def sub_scaled_(self, p, g, alpha, work):
        return sub_scaled_out(np, p, g, alpha, work)

    def add_at(self, x, index, value):
        np.add.at(x, index, value)
        return x

    def scatter_add(self, xp, shape, idx, values):
        out = np.zeros(shape, dtype=values.dtype)
        np.add.at(out, idx, values)
        return out

    def shared_buffer(self, ref, total, comm):
        """The buffer itself goes to MPI."""
        flat = np.empty(total, dtype=ref.dtype)
        return SharedBuffer(flat, np.multiply, lambda: flat.fill(0), lambda: comm.allreduce_(flat))
