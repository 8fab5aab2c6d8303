"""Word and sequence layers of "Deep Learning from Scratch 2", in xpnet's layer form.

Embeddings (``Embedding``, ``EmbeddingDot``, ``NegativeSamplingLoss`` with its
``UnigramSampler``) and the time-distributed layers that sit around a recurrent one
(``TimeEmbedding``, ``TimeAffine``, ``TimeSoftmaxWithLoss``, ``TimeDropout``). The recurrent
layers are in :mod:`xpnet.recurrent`, attention in :mod:`xpnet.attention`.

Shapes follow the book: a batch of sequences is (N, T) word indices or (N, T, D) vectors.
Every layer takes the namespace from its input and never asks which backend it runs on; it
reads its weights from ``self.params`` (an optimizer may replace them: jax, dask). The
embedding's gradient is an accumulating scatter-add (:func:`xpnet.backend.scatter_add`):
a word that occurs twice in a batch gets both rows of ``dout`` added.

Word indices are checked (integer dtype, inside ``[0, rows)``) at every forward: one host
sync. Set ``layer.check_indices = False`` for data checked once already, or inside a
compiled (traced) step, where the check cannot read values back.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .backend import (
    Backend,
    check_same_backend,
    dtype_name,
    from_host_like,
    host_dtype,
    namespace,
    resolve,
    scatter_add,
    to_numpy,
)
from .checks import as_rng, is_array, number_arg, size_arg
from .errors import ConfigError, DTypeError, IndexRangeError, LabelError, ShapeError
from .layers import Layer, check_fits, check_param


def _backend(backend) -> Backend:
    return backend if isinstance(backend, Backend) else resolve(backend)


def check_indices(idx, rows: int, where: str, like):
    """``idx`` as an index array for a table of ``rows`` rows (int32 or int64), or a clear error:
    not an array, another library or device than ``like``, not integers, or a value outside
    ``[0, rows)`` (:class:`~xpnet.errors.IndexRangeError`, an ``IndexError``). Reads the smallest
    and largest index back to the host (one sync)."""
    if not is_array(idx):
        raise DTypeError(f"{where}: word indices must be an integer array, got {type(idx).__name__}; "
                         f"convert them first, e.g. xpnet.get_backend().asarray(np.asarray(ids))")
    check_same_backend(idx, like, f"{where} indices")
    xp = namespace(idx)
    if not xp.isdtype(idx.dtype, "integral"):
        raise DTypeError(f"{where}: word indices must be integers, got dtype {dtype_name(idx.dtype)}; "
                         f"convert them with xp.astype(idx, xp.int64)")
    idx = _index_dtype(idx, xp)
    if math.prod(idx.shape) == 0:
        return idx
    lo, hi = (int(v) for v in to_numpy(xp.stack([xp.min(idx), xp.max(idx)])))
    if lo < 0 or hi >= rows:
        raise IndexRangeError(f"{where}: word indices must lie in [0, {rows - 1}] (the weight has {rows} "
                              f"rows); got values from {lo} to {hi}. Give the embedding a row for every "
                              f"word of the vocabulary, or map unknown words to an index such as <unk>")
    return idx


def _index_dtype(idx, xp):
    """int32 and int64 indices as they are, other integer dtypes (uint8, int16...) as int64."""
    return idx if idx.dtype in (xp.int32, xp.int64) else xp.astype(idx, xp.int64)


def _table(W, name: str):
    if check_param(W, f"{name} W").ndim != 2:
        raise ShapeError(f"{name} needs W of shape (vocabulary, dimension), got {tuple(W.shape)}")
    return W


def embed(W, idx):
    """``W[idx]``: the rows of ``W`` picked by integer array ``idx`` of any shape (via ``take``)."""
    xp = namespace(W)
    flat = idx if idx.ndim == 1 else xp.reshape(idx, (-1,))
    out = xp.take(W, flat, axis=0)
    return out if idx.ndim == 1 else xp.reshape(out, (*idx.shape, W.shape[1]))


def embed_grad(W, idx, dout):
    """``dW`` of :func:`embed`: zeros, then ``dout``'s rows added at ``idx`` (repeats accumulated)."""
    xp = namespace(dout)
    flat = idx if idx.ndim == 1 else xp.reshape(idx, (-1,))
    d = dout if dout.ndim == 2 else xp.reshape(dout, (-1, W.shape[1]))
    if d.shape[0] != flat.shape[0] or d.shape[1] != W.shape[1]:
        raise ShapeError(f"the embedding's dout has shape {tuple(dout.shape)}; expected "
                         f"{(*idx.shape, W.shape[1])} (one row of {W.shape[1]} per index)")
    return scatter_add(W.shape, flat, d)


def _create_table(cls, vocab_size, dim, std, rng, backend):
    be = _backend(backend)
    V, D = size_arg(f"{cls.__name__} vocab_size", vocab_size), size_arg(f"{cls.__name__} dim", dim)
    std = number_arg(f"{cls.__name__} std", std)
    if not std > 0:
        raise ConfigError(f"{cls.__name__} std must be a positive number, got {std!r}")
    check_fits(V * D * (8 + host_dtype(be.dtype).itemsize), f"{cls.__name__}({V}, {D})")
    return be.asarray(as_rng(rng).standard_normal((V, D)) * std)


def _lookup_indices(layer, idx):
    """``idx`` checked against ``layer.params["W"]`` when ``layer.check_indices``, else only cast."""
    W = layer.params["W"]
    if layer.check_indices:
        return check_indices(idx, W.shape[0], type(layer).__name__, W)
    return _index_dtype(idx, namespace(idx))


class Embedding(Layer):
    """``out = W[idx]`` for word indices ``idx`` of any shape (out: ``idx.shape + (D,)``).

    Backward: ``dW = 0; dW[idx] += dout`` with repeated indices accumulated; the indices get no
    gradient (backward returns None), as in the book.
    """

    def __init__(self, W):
        super().__init__()
        self.params = {"W": _table(W, type(self).__name__)}
        self.idx = None
        self.check_indices = True

    @classmethod
    def create(cls, vocab_size: int, dim: int, std: float = 0.01, rng=None, backend: Backend | str | None = None):
        """The book's initial table: ``std * randn(vocab_size, dim)`` (std 0.01) drawn on the host."""
        return cls(_create_table(cls, vocab_size, dim, std, rng, backend))

    def forward(self, idx, train: bool = True):
        self.idx = _lookup_indices(self, idx)
        return embed(self.params["W"], self.idx)

    def backward(self, dout):
        self.grads["W"] = embed_grad(self.params["W"], self._cached(self.idx), dout)
        return None


class TimeEmbedding(Layer):
    """:class:`Embedding` for a batch of sequences: (N, T) indices in, (N, T, D) vectors out."""

    def __init__(self, W):
        super().__init__()
        self.params = {"W": _table(W, type(self).__name__)}
        self.idx = None
        self.check_indices = True

    create = classmethod(Embedding.create.__func__)
    backward = Embedding.backward

    def forward(self, idx, train: bool = True):
        idx = _lookup_indices(self, idx)
        if idx.ndim != 2:
            raise ShapeError(f"TimeEmbedding expects word indices of shape (N, T), got {tuple(idx.shape)}; "
                             f"a single sequence needs a batch axis of 1")
        self.idx = idx
        return embed(self.params["W"], idx)
