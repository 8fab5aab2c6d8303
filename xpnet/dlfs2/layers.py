"""The second book's ``common.layers`` on xpnet's layers, in the book's list form.

Every layer has ``params`` and ``grads``: lists, in the book's order (``[W, b]``), with one
gradient array per parameter made by ``np.zeros_like``. ``backward`` writes the new gradient
into that array (the book's ``self.grads[0][...] = dW``), so a model that collected
``self.grads += layer.grads`` sees it; an optimizer's ``params[i] -= ...`` changes the array the
layer reads. On jax and dask these arrays are the books' NumPy boxes (:mod:`xpnet.dlfs1.box`),
which is what makes both work there.

The maths is xpnet's (:mod:`xpnet.layers`, :mod:`xpnet.losses`); each class here keeps the
book's constructor, call forms (``forward(x)``, ``forward(x, train_flg=True)``,
``backward(dout=1)``) and attribute names (``x``, ``out``, ``y``, ``t``, ``mask``,
``dropout_ratio``).
"""

from __future__ import annotations

from .. import layers as L
from .. import losses
from ..backend import namespace
from ..errors import ShapeError
from .arrays import like, mutable, np, out, put, raw

__all__ = ["Affine", "Dropout", "Embedding", "MatMul", "Sigmoid", "SigmoidWithLoss", "Softmax", "SoftmaxWithLoss"]


class _Wrapped:
    """A list-form layer around one xpnet layer: ``names`` are the xpnet layer's parameter names
    in the book's order; ``cached`` maps the book's attribute names to the xpnet layer's."""

    names: tuple[str, ...] = ()
    cached: dict = {}

    def __init__(self, layer, *arrays):
        self.params = [mutable(a, f"{type(self).__name__} {n}") for a, n in zip(arrays, self.names)]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.layer = layer

    def __getattr__(self, name):  # the book's cached values: self.x, self.out, self.y, ...
        inner = self.cached.get(name)
        if inner is None or "layer" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return out(getattr(self.layer, inner))

    def _load(self):
        """Point the xpnet layer at the current contents of ``params`` (an optimizer on jax/dask
        gives the boxes new arrays)."""
        for name, p in zip(self.names, self.params):
            self.layer.params[name] = raw(p)

    def forward(self, x):
        self._load()
        return out(self.layer.forward(like(x, self.params[0]) if self.params else raw(x)))

    def backward(self, dout=1):
        dx = self.layer.backward(raw(dout))
        for g, name in zip(self.grads, self.names):
            put(g, self.layer.grads[name])  # the book's self.grads[i][...] = dW
        return out(dx)


class MatMul(_Wrapped):
    """``out = x W``; ``grads[0] = x^T dout`` (:class:`xpnet.layers.MatMul`)."""

    names, cached = ("W",), {"x": "x"}

    def __init__(self, W):
        W = mutable(W, "MatMul W")
        super().__init__(L.MatMul(raw(W)), W)


class Affine(_Wrapped):
    """``out = x W + b``; ``grads = [x^T dout, sum(dout)]`` (:class:`xpnet.layers.Affine`)."""

    names, cached = ("W", "b"), {"x": "x"}

    def __init__(self, W, b):
        W, b = mutable(W, "Affine W"), mutable(b, "Affine b")
        super().__init__(L.Affine(raw(W), raw(b)), W, b)


class Embedding(_Wrapped):
    """``out = W[idx]``; backward adds ``dout``'s rows into ``grads[0]`` at ``idx`` (a word that
    occurs twice gets both), returns None (:class:`xpnet.sequence.Embedding`). Indices outside
    the table are refused with an error."""

    names, cached = ("W",), {"idx": "idx"}

    def __init__(self, W):
        W = mutable(W, "Embedding W")
        super().__init__(_sequence().Embedding(raw(W)), W)

    def forward(self, idx):
        self._load()
        return out(self.layer.forward(raw(idx)))

    def backward(self, dout):
        super().backward(dout)
        return None


def _sequence():
    from .. import sequence

    return sequence


class Sigmoid(_Wrapped):
    """``out = 1 / (1 + exp(-x))``; backward ``dout (1 - out) out``."""

    cached = {"out": "out"}

    def __init__(self):
        super().__init__(L.Sigmoid())


class Softmax(_Wrapped):
    """Softmax over the last axis; backward ``out * (dout - sum(out * dout))``."""

    cached = {"out": "out"}

    def __init__(self):
        super().__init__(L.Softmax())


class Dropout(_Wrapped):
    """Training: ``x * mask`` (units kept where a uniform draw exceeds ``dropout_ratio``);
    evaluation: ``x * (1 - dropout_ratio)``. The mask is drawn from the books' ``np.random``
    (one seeded generator on the host), so ``np.random.seed`` fixes it on every backend."""

    cached = {}

    def __init__(self, dropout_ratio=0.5):
        super().__init__(L.Dropout(dropout_ratio))
        self.dropout_ratio = self.layer.ratio

    @property
    def mask(self):
        return out(self.layer.mask)

    def forward(self, x, train_flg=True):
        self.layer.rng = np.random.state
        return out(self.layer.forward(raw(x), train=bool(train_flg)))


class SoftmaxWithLoss(_Wrapped):
    """Softmax, then the mean cross-entropy against ``t`` (labels (N,) or one-hot rows (N, C));
    backward ``(y - t) * dout / N`` (:class:`xpnet.losses.SoftmaxWithLoss`). Labels out of range
    are refused with an error."""

    cached = {"y": "y", "t": "t"}

    def __init__(self):
        super().__init__(losses.SoftmaxWithLoss())

    def forward(self, x, t):
        x = raw(x)
        if x.ndim != 2:
            raise ShapeError(f"SoftmaxWithLoss takes scores of shape (N, C), got {tuple(x.shape)}; for "
                             f"(N, T, C) sequences use TimeSoftmaxWithLoss")
        t = raw(t)
        if t.ndim == 2 and tuple(t.shape) == tuple(x.shape):  # one-hot rows -> labels, as the book does
            t = namespace(t).argmax(t, axis=1)
        return out(self.layer.forward(x, t))

    def backward(self, dout=1):
        return out(self.layer.backward(float(dout)))


class SigmoidWithLoss(_Wrapped):
    """Sigmoid, then the binary cross-entropy against 0/1 targets ``t`` of the scores' shape;
    backward ``(y - t) * dout / N`` (:class:`xpnet.losses.SigmoidWithLoss`). Scores of shape
    (N,), as the negative-sampling layers give, are taken as one column."""

    cached = {"y": "y", "t": "t"}

    def __init__(self):
        super().__init__(losses.SigmoidWithLoss())
        self.loss = None
        self._shape = None

    def forward(self, x, t):
        x, t = raw(x), raw(t)
        self._shape = tuple(x.shape)
        if x.ndim == 1:
            xp = namespace(x)
            x, t = xp.reshape(x, (-1, 1)), xp.reshape(t, (-1, 1))
        self.loss = out(self.layer.forward(x, t))
        return self.loss

    def backward(self, dout=1):
        dx = self.layer.backward(float(dout))
        if len(self._shape) == 1:
            dx = namespace(dx).reshape(dx, self._shape)
        return out(dx)
