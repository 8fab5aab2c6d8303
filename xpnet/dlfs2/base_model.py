"""The second book's ``common.base_model``: ``BaseModel`` with ``save_params`` / ``load_params``.

As in the book, the parameters are saved as a pickled list of float16 host arrays in
``<ClassName>.pkl`` (a file the book's code can read, and the reverse); loading casts them back
to each parameter's dtype and writes them into the parameters in place (the books' box's contents
on jax and dask), so every layer sees them. Loading reads NumPy arrays only: a pickle that asks
for any other object is refused, so a file from elsewhere cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy

from ..backend import from_host_like, host_dtype
from ..errors import CheckpointError, ShapeError
from .arrays import raw, to_host

__all__ = ["BaseModel"]

_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("builtins", "list")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(f"the parameter file asks for {module}.{name}; a parameter file holds a list of "
                              f"NumPy arrays only, as BaseModel.save_params writes it")


class BaseModel:
    """A model with ``params`` and ``grads`` lists; subclasses write ``forward`` and ``backward``."""

    def __init__(self):
        self.params, self.grads = None, None

    def forward(self, *args):
        raise NotImplementedError

    def backward(self, *args):
        raise NotImplementedError

    def _file(self, file_name):
        return type(self).__name__ + ".pkl" if file_name is None else os.fspath(file_name)

    def save_params(self, file_name=None):
        """Pickle the parameters as float16 host arrays into ``file_name`` (``<ClassName>.pkl``)."""
        params = [to_host(p).astype(numpy.float16) for p in self.params]
        with open(self._file(file_name), "wb") as f:
            pickle.dump(params, f)

    def load_params(self, file_name=None):
        """Read the parameters saved by :meth:`save_params` into this model's parameters."""
        path = self._file(file_name)
        if "/" in path:
            path = path.replace("/", os.sep)
        if not os.path.exists(path):
            raise CheckpointError(f"No file: {path}; save the parameters first (model.save_params()) or give "
                                  f"the file's path")
        with open(path, "rb") as f:
            try:
                saved = _ArraysOnly(io.BytesIO(f.read())).load()
            except CheckpointError:
                raise
            except Exception as e:  # any unreadable pickle: truncated, not a pickle
                raise CheckpointError(f"{path} is not a parameter file ({type(e).__name__}: {e})") from e
        if not isinstance(saved, list) or len(saved) != len(self.params):
            n = len(saved) if isinstance(saved, list) else type(saved).__name__
            raise CheckpointError(f"{path} holds {n} parameters; this {type(self).__name__} has "
                                  f"{len(self.params)}. Load the file into the model that saved it")
        for i, (param, value) in enumerate(zip(self.params, saved)):
            if tuple(value.shape) != tuple(param.shape):
                raise ShapeError(f"{path}: parameter {i} has shape {tuple(value.shape)}, the model's has "
                                 f"{tuple(param.shape)}")
        for param, value in zip(self.params, saved):
            a = raw(param)
            param[...] = from_host_like(numpy.asarray(value).astype(host_dtype(a.dtype)), a)
