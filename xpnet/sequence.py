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
    device,
    dtype_name,
    from_host_like,
    host_dtype,
    namespace,
    resolve,
    scatter_add,
    to_numpy,
)
from .checks import as_rng, is_array, number_arg, size_arg
from .errors import CallOrderError, ConfigError, DTypeError, IndexRangeError, LabelError, ShapeError
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
    """int32 and int64 indices as they are, other integer dtypes (uint8, int16...) as the
    namespace's default integer (int64; int32 on jax without x64)."""
    return idx if idx.dtype in (xp.int32, xp.int64) else xp.astype(idx, _default_int(idx, xp))


def _default_int(x, xp):
    return xp.arange(1, device=device(x)).dtype


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
    if tuple(dout.shape) != (*idx.shape, W.shape[1]):
        raise ShapeError(f"the embedding's dout has shape {tuple(dout.shape)}; expected "
                         f"{(*idx.shape, W.shape[1])} (one row of {W.shape[1]} per index)")
    xp = namespace(dout)
    flat = idx if idx.ndim == 1 else xp.reshape(idx, (-1,))
    return scatter_add(W.shape, flat, dout if dout.ndim == 2 else xp.reshape(dout, (-1, W.shape[1])))


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


# ---------------------------------------------------------------------- word2vec with negative sampling
class EmbeddingDot(Layer):
    """``out[n] = W[idx[n]] . h[n]`` (one score per row); backward ``dh = dout * W[idx]``,
    ``dW[idx] += dout * h`` (repeats accumulated)."""

    def __init__(self, W):
        super().__init__()
        self.params = {"W": _table(W, "EmbeddingDot")}
        self.check_indices = True
        self.h = self.idx = self.rows = None

    def forward(self, h, idx):
        W = self.params["W"]
        idx = _lookup_indices(self, idx)
        if h.ndim != 2 or idx.ndim != 1 or h.shape != (idx.shape[0], W.shape[1]):
            raise ShapeError(f"EmbeddingDot expects h of shape (N, {W.shape[1]}) and N indices, got h "
                             f"{tuple(h.shape)} and indices {tuple(idx.shape)}")
        self.h, self.idx, self.rows = h, idx, embed(W, idx)
        return namespace(h).sum(self.rows * h, axis=1)

    def backward(self, dout):
        xp = namespace(dout)
        d = xp.reshape(dout, (-1, 1))
        self.grads["W"] = embed_grad(self.params["W"], self._cached(self.idx), d * self.h)
        return d * self.rows


class UnigramSampler:
    """Negative samples drawn from the corpus' unigram distribution raised to ``power`` (0.75 in
    the book), on the host from a seeded ``numpy.random.Generator``: the same words on every backend.

    ``get_negative_sample(target)`` gives an (N, sample_size) int64 host array; each row draws
    without replacement and never the row's own target word (the book's CPU sampler).
    """

    def __init__(self, corpus, power: float = 0.75, sample_size: int = 5, rng=None):
        corpus = np.asarray(to_numpy(corpus) if is_array(corpus) else corpus).reshape(-1)
        if corpus.size == 0 or corpus.dtype.kind not in "iu":
            raise ConfigError(f"UnigramSampler needs a non-empty corpus of word indices (integers), got "
                              f"{corpus.size} values of dtype {corpus.dtype}")
        if corpus.min() < 0:
            raise IndexRangeError(f"UnigramSampler: word indices must be >= 0, got {int(corpus.min())}")
        self.power = number_arg("UnigramSampler power", power)
        self.sample_size = size_arg("UnigramSampler sample_size", sample_size)
        counts = np.bincount(corpus).astype(np.float64)
        self.vocab_size = counts.size
        if np.count_nonzero(counts) <= self.sample_size:
            raise ConfigError(f"UnigramSampler draws {self.sample_size} distinct negatives besides the target, "
                              f"but the corpus has only {np.count_nonzero(counts)} distinct words; lower "
                              f"sample_size")
        p = np.where(counts > 0, counts ** self.power, 0.0)
        self.word_p = p / p.sum()
        self.rng = as_rng(rng)

    def get_negative_sample(self, target) -> np.ndarray:
        target = np.asarray(to_numpy(target) if is_array(target) else target).reshape(-1)
        out = np.empty((target.size, self.sample_size), dtype=np.int64)
        for n, word in enumerate(target):
            p = self.word_p.copy()
            if 0 <= word < p.size:
                p[word] = 0.0
            out[n] = self.rng.choice(self.vocab_size, size=self.sample_size, replace=False, p=p / p.sum())
        return out


class NegativeSamplingLoss(Layer):
    """The book's negative-sampling loss for word2vec: for each row ``h[n]`` the score of its
    target word and of ``sample_size`` negatives (:class:`UnigramSampler`), each through
    sigmoid with binary cross-entropy (label 1 for the target, 0 for the negatives):
    ``loss = sum over the 1 + sample_size columns of the batch-mean BCE``.

    ``forward(h, target)`` gives that 0-d loss; ``backward(dout=1)`` gives ``dh`` and fills
    ``grads["W"]`` (one table shared by the target and negative scores: their gradients add).
    """

    def __init__(self, W, corpus, power: float = 0.75, sample_size: int = 5, rng=None):
        super().__init__()
        self.params = {"W": _table(W, "NegativeSamplingLoss")}
        self.sampler = UnigramSampler(corpus, power, sample_size, rng)
        if self.sampler.vocab_size > W.shape[0]:
            raise IndexRangeError(f"NegativeSamplingLoss: the corpus uses word indices up to "
                                  f"{self.sampler.vocab_size - 1} but W has only {W.shape[0]} rows")
        self.sample_size = self.sampler.sample_size
        self.check_indices = True
        self.h = self.idx = self.rows = self.y = self.t = None

    def forward(self, h, target):
        xp = namespace(h)
        W = self.params["W"]
        target = _lookup_indices(self, target)
        if h.ndim != 2 or target.ndim != 1 or h.shape != (target.shape[0], W.shape[1]):
            raise ShapeError(f"NegativeSamplingLoss expects h of shape (N, {W.shape[1]}) and N target words, "
                             f"got h {tuple(h.shape)} and targets {tuple(target.shape)}")
        n, k = h.shape[0], 1 + self.sample_size
        negative = from_host_like(self.sampler.get_negative_sample(target).astype(host_dtype(target.dtype)), target)
        idx = xp.concat([xp.reshape(target, (n, 1)), negative], axis=1)
        self.h, self.idx, self.rows = h, idx, embed(W, idx)  # rows: (N, k, D)
        scores = xp.sum(self.rows * xp.expand_dims(h, axis=1), axis=2)
        first = xp.arange(k, device=device(idx)) == 0
        self.t = xp.astype(xp.broadcast_to(xp.reshape(first, (1, k)), (n, k)), h.dtype)
        self.y = F.sigmoid(scores, xp=xp)
        return F.binary_cross_entropy(scores, self.t, xp)

    def backward(self, dout=1.0):
        xp = namespace(self._cached(self.y))
        dscore = xp.expand_dims((self.y - self.t) * (dout / self.y.shape[0]), axis=2)  # (N, k, 1)
        self.grads["W"] = embed_grad(self.params["W"], self.idx, dscore * xp.expand_dims(self.h, axis=1))
        return xp.sum(dscore * self.rows, axis=1)

    def config(self) -> dict:
        return {"power": self.sampler.power, "sample_size": self.sample_size}


# ---------------------------------------------------------------------- time-distributed layers
class TimeAffine(Layer):
    """``out[:, t] = x[:, t] W + b`` for every time step, as one (N*T, D) x (D, O) product;
    backward ``dx = dout W^T``, ``dW = sum over n, t of x^T dout``, ``db = sum(dout)``."""

    def __init__(self, W, b):
        super().__init__()
        check_param(W, "TimeAffine W")
        check_param(b, "TimeAffine b", like=W)
        if W.ndim != 2 or b.ndim != 1 or b.shape[0] != W.shape[1]:
            raise ShapeError(f"TimeAffine needs W of shape (in, out) and b of shape (out,); got W "
                             f"{tuple(W.shape)}, b {tuple(b.shape)}")
        self.params = {"W": W, "b": b}
        self.x = None

    @classmethod
    def create(cls, in_size: int, out_size: int, std=None, rng=None, backend: Backend | str | None = None):
        """Weights ``randn(in, out) * std`` (default the book's ``1 / sqrt(in)``), zero bias."""
        be = _backend(backend)
        in_size, out_size = size_arg("TimeAffine in_size", in_size), size_arg("TimeAffine out_size", out_size)
        std = 1.0 / math.sqrt(in_size) if std is None else number_arg("TimeAffine std", std)
        check_fits(in_size * out_size * (8 + host_dtype(be.dtype).itemsize), f"TimeAffine({in_size}, {out_size})")
        return cls(be.asarray(as_rng(rng).standard_normal((in_size, out_size)) * std), be.zeros((out_size,)))

    def forward(self, x, train: bool = True):
        W = self.params["W"]
        if not is_array(x) or x.ndim != 3 or x.shape[2] != W.shape[0]:
            raise ShapeError(f"TimeAffine expects input of shape (N, T, {W.shape[0]}), got "
                             f"{tuple(getattr(x, 'shape', ())) if is_array(x) else type(x).__name__}")
        check_same_backend(x, W, "TimeAffine input")
        if x.dtype != W.dtype:
            raise DTypeError(f"TimeAffine expects input of its weights' dtype {dtype_name(W.dtype)}, got "
                             f"{dtype_name(x.dtype)}; convert it with xp.astype(x, xp.{dtype_name(W.dtype)})")
        xp = namespace(x)
        self.x = x
        out = xp.reshape(x, (-1, W.shape[0])) @ W + self.params["b"]
        return xp.reshape(out, (x.shape[0], x.shape[1], W.shape[1]))

    def backward(self, dout):
        xp = namespace(dout)
        x, W = self._cached(self.x), self.params["W"]
        d = xp.reshape(dout, (-1, W.shape[1]))
        self.grads["W"] = xp.reshape(x, (-1, W.shape[0])).T @ d
        self.grads["b"] = xp.sum(d, axis=0)
        return xp.reshape(d @ W.T, x.shape)


class TimeTiedAffine(Layer):
    """:class:`TimeAffine` whose weight is an embedding's table, transposed (weight tying, the
    book's better RNNLM): ``out = x W_e^T + b`` with ``W_e`` (V, D) the embedding's, so the
    model has one (V, D) array for both. Its own parameter is ``b``; backward leaves the table's
    gradient from this layer in ``dW`` (V, D), which the model adds to the embedding's."""

    def __init__(self, b, embedding=None):
        super().__init__()
        check_param(b, "TimeTiedAffine b")
        if b.ndim != 1:
            raise ShapeError(f"TimeTiedAffine needs b of shape (vocabulary,), got {tuple(b.shape)}")
        self.params = {"b": b}
        self.embedding = embedding
        self.x = self.dW = None

    @property
    def W(self):
        """The tied table (V, D), the embedding's own array."""
        if self.embedding is None:
            raise CallOrderError("TimeTiedAffine is not tied to an embedding yet: give it one (embedding=...)")
        return self.embedding.params["W"]

    def forward(self, x, train: bool = True):
        W = self.W
        if not is_array(x) or x.ndim != 3 or x.shape[2] != W.shape[1]:
            raise ShapeError(f"TimeTiedAffine expects input of shape (N, T, {W.shape[1]}), got "
                             f"{tuple(getattr(x, 'shape', ())) if is_array(x) else type(x).__name__}")
        xp = namespace(x)
        self.x = x
        out = xp.reshape(x, (-1, W.shape[1])) @ W.T + self.params["b"]
        return xp.reshape(out, (x.shape[0], x.shape[1], W.shape[0]))

    def backward(self, dout):
        xp = namespace(dout)
        x, W = self._cached(self.x), self.W
        d = xp.reshape(dout, (-1, W.shape[0]))
        self.dW = d.T @ xp.reshape(x, (-1, W.shape[1]))
        self.grads["b"] = xp.sum(d, axis=0)
        return xp.reshape(d @ W, x.shape)


class TimeSoftmaxWithLoss:
    """Softmax with cross-entropy at every time step, averaged over the counted steps.

    ``forward(xs, ts)``: scores (N, T, V), targets (N, T) word indices (or one-hot (N, T, V),
    turned into indices as the book does). Targets equal to ``ignore_label`` (-1) are not
    counted: ``loss = -sum(mask * log y[t]) / sum(mask)``. Backward:
    ``(y - onehot(t)) * mask / sum(mask)``. ``check`` validates the targets (one host sync);
    with every target ignored it refuses, and unchecked it gives a loss of 0, not NaN.
    """

    def __init__(self, ignore_label: int = -1, check_labels: bool = True):
        if not isinstance(ignore_label, (int, np.integer)) or isinstance(ignore_label, bool):
            raise ConfigError(f"ignore_label must be an integer, got {ignore_label!r}")
        self.ignore_label = int(ignore_label)
        self.check_labels = bool(check_labels)
        self.y = self.T = self.mask = self.count = None

    def forward(self, xs, ts, check: bool | None = None):
        xp = namespace(xs)
        if xs.ndim != 3 or 0 in xs.shape:
            raise ShapeError(f"TimeSoftmaxWithLoss expects scores of shape (N, T, V), got {tuple(xs.shape)}")
        if ts.ndim == 3 and xp.isdtype(ts.dtype, "real floating"):
            ts = xp.argmax(ts, axis=2)
        if tuple(ts.shape) != tuple(xs.shape[:2]):
            raise LabelError(f"TimeSoftmaxWithLoss: targets of shape {tuple(ts.shape)} for scores of shape "
                             f"{tuple(xs.shape)}; expected one word index per (n, t): {tuple(xs.shape[:2])}")
        if self.check_labels if check is None else check:
            self._check(ts, xs)
        V = xs.shape[2]
        mask = xp.astype(ts != self.ignore_label, xs.dtype)
        T = xp.astype(xp.expand_dims(ts, axis=2) == xp.arange(V, dtype=ts.dtype, device=device(ts)), xs.dtype)
        self.T = T * xp.expand_dims(mask, axis=2)
        self.mask = mask
        self.count = xp.maximum(xp.sum(mask), xp.ones((), dtype=xs.dtype, device=device(mask)))
        logp = F.log_softmax(xs, axis=-1, xp=xp)
        self.y = xp.exp(logp)
        return -xp.sum(logp * self.T) / self.count

    def _check(self, ts, xs) -> None:
        check_same_backend(ts, xs, "TimeSoftmaxWithLoss targets")
        xp = namespace(ts)
        if not xp.isdtype(ts.dtype, "integral"):
            raise LabelError(f"TimeSoftmaxWithLoss: targets must be integer word indices, got dtype "
                             f"{dtype_name(ts.dtype)}")
        V = xs.shape[2]
        counted = ts != self.ignore_label
        wide = xp.astype(ts, _default_int(ts, xp))  # torch has no min/max for uint16/32/64
        lo = xp.min(xp.where(counted, wide, xp.zeros_like(wide)))
        hi = xp.max(xp.where(counted, wide, xp.zeros_like(wide)))
        lo, hi, n = (int(v) for v in to_numpy(xp.stack([lo, hi, xp.sum(xp.astype(counted, wide.dtype))])))
        if n == 0:
            raise LabelError(f"TimeSoftmaxWithLoss: every target equals ignore_label={self.ignore_label}; "
                             f"there is nothing to learn from in this batch")
        if lo < 0 or hi >= V:
            raise LabelError(f"TimeSoftmaxWithLoss: targets must lie in [0, {V - 1}] or equal ignore_label="
                             f"{self.ignore_label}; got values from {lo} to {hi}")

    def backward(self, dout=1.0):
        if self.y is None:
            raise CallOrderError("TimeSoftmaxWithLoss.backward() called before forward(xs, ts); compute "
                                 "the loss first")
        xp = namespace(self.y)
        return (self.y - self.T) * xp.expand_dims(self.mask, axis=2) * (dout / self.count)


class TimeDropout(Layer):
    """The book's inverted dropout: training ``x * mask / (1 - ratio)`` with each unit kept when
    its uniform draw exceeds ``ratio``; evaluation passes ``x`` unchanged. Backward multiplies by
    the same scaled mask. The mask is drawn on the host from ``rng`` (the same on every backend);
    ``freeze``, ``draw_mask`` and ``rows`` are :class:`~xpnet.Dropout`'s (a compiled step passes
    the masks in; data-parallel ranks keep their rows of one global mask)."""

    def __init__(self, ratio: float = 0.5, rng=None):
        super().__init__()
        ratio = number_arg("TimeDropout ratio", ratio)
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"TimeDropout ratio must be in [0, 1), got {ratio}")
        self.ratio = ratio
        self.rng = as_rng(rng)
        self.mask = None
        self.freeze = False
        self.rows = None  # (lo, hi, total), as Dropout's

    def forward(self, x, train: bool = True):
        if not train:
            self.mask = None
            return x
        if not (self.freeze and self.mask is not None and self.mask.shape == x.shape):
            self.mask = from_host_like(self.draw_mask(tuple(x.shape), host_dtype(x.dtype)), x)
        return x * self.mask

    def draw_mask(self, shape: tuple, dtype) -> np.ndarray:
        """The next scaled mask, on the host: ``1 / (1 - ratio)`` keeps a unit, 0 drops it."""
        total = shape if self.rows is None else (self.rows[2], *shape[1:])
        if self.rows is not None and shape[0] != self.rows[1] - self.rows[0]:
            raise ShapeError(f"TimeDropout was told it holds rows {self.rows[0]}:{self.rows[1]} of a batch of "
                             f"{self.rows[2]}, but its input has {shape[0]} rows")
        keep = self.rng.random(total) > self.ratio
        keep = keep if self.rows is None else keep[self.rows[0]:self.rows[1]]
        return (keep * (1.0 / (1.0 - self.ratio))).astype(dtype)

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask

    def config(self) -> dict:
        return {"ratio": self.ratio}
