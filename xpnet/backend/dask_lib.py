"""Dask: lazy arrays on the host (a correctness backend: each update is persisted)."""

from __future__ import annotations

import array_api_compat

from .base import Library


class Dask(Library):
    name = module = "dask"
    roots = ("dask",)
    api_module = "array_api_compat.dask.array"
    install = "pip install 'xpnet[dask]'"
    writes_in_place = False

    def owns(self, x) -> bool:
        return array_api_compat.is_dask_array(x)

    def to_numpy(self, x):
        import numpy as np

        return np.asarray(x.compute())

    def upload(self, xp, dev, a, fresh):
        return xp.asarray(a)

    def writeable(self, x) -> bool:
        """array-api-compat calls dask arrays writeable (they take ``x[i] = v``), but their ``-=``
        builds a new array and rebinds the name."""
        return False

    def materialize(self, x):
        return x.persist()  # steps do not pile up into one growing graph

    def materialize_all(self, arrays: list) -> list:
        # one persist for arrays that share a graph (a step's gradients share its forward and
        # backward): persisted one by one, each would compute the shared part again
        return list(self.import_module().persist(*arrays))
