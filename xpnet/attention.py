"""Attention of "Deep Learning from Scratch 2" (chapter 8): ``AttentionWeight``, ``WeightSum``,
``Attention`` and ``TimeAttention``.

These are computational-graph nodes with two inputs, as in the book: ``forward(hs, h)`` and
``backward(dout)`` giving a gradient for each input. ``hs`` (N, T, H) are the encoder's
hidden states, ``h`` (N, H) one decoder state. They have no parameters.
"""

from __future__ import annotations

from . import functional as F
from .backend import check_same_backend, namespace
from .errors import ShapeError
from .layers import Layer


def _check(hs, h, name: str) -> None:
    check_same_backend(h, hs, f"{name} h")
    if hs.ndim != 3 or h.ndim != 2 or h.shape[0] != hs.shape[0] or h.shape[1] != hs.shape[2]:
        raise ShapeError(f"{name} expects hs of shape (N, T, H) and h of shape (N, H) with the same N and H; "
                         f"got hs {tuple(hs.shape)} and h {tuple(h.shape)}")


class AttentionWeight(Layer):
    """``a = softmax(sum(hs * h, axis=2))`` over the T encoder states (N, T); backward through
    the softmax, then ``dhs = ds h``, ``dh = sum(ds hs, axis=1)``."""

    def __init__(self):
        super().__init__()
        self.hs = self.h = self.a = None

    def forward(self, hs, h):
        _check(hs, h, "AttentionWeight")
        xp = namespace(hs)
        self.hs, self.h = hs, h
        self.a = F.softmax(xp.sum(hs * xp.expand_dims(h, axis=1), axis=2), axis=-1, xp=xp)
        return self.a

    def backward(self, da):
        xp = namespace(da)
        a = self._cached(self.a)
        ds = xp.expand_dims(a * (da - xp.sum(da * a, axis=1, keepdims=True)), axis=2)  # (N, T, 1)
        return ds * xp.expand_dims(self.h, axis=1), xp.sum(ds * self.hs, axis=1)


class WeightSum(Layer):
    """``c = sum(hs * a, axis=1)``: the context vector (N, H); backward ``dhs = dc a``,
    ``da = sum(dc hs, axis=2)``."""

    def __init__(self):
        super().__init__()
        self.hs = self.a = None

    def forward(self, hs, a):
        xp = namespace(hs)
        if hs.ndim != 3 or tuple(a.shape) != tuple(hs.shape[:2]):
            raise ShapeError(f"WeightSum expects hs (N, T, H) and weights a (N, T); got hs {tuple(hs.shape)} "
                             f"and a {tuple(a.shape)}")
        self.hs, self.a = hs, a
        return xp.sum(hs * xp.expand_dims(a, axis=2), axis=1)

    def backward(self, dc):
        xp = namespace(dc)
        hs = self._cached(self.hs)
        d = xp.expand_dims(dc, axis=1)  # (N, 1, H), broadcast over T as the book's repeat
        return d * xp.expand_dims(self.a, axis=2), xp.sum(d * hs, axis=2)


class Attention(Layer):
    """:class:`AttentionWeight` then :class:`WeightSum`: the context vector for one decoder
    state; ``attention_weight`` keeps the last weights (N, T)."""

    def __init__(self):
        super().__init__()
        self.weight, self.sum = AttentionWeight(), WeightSum()
        self.attention_weight = None

    def forward(self, hs, h):
        self.attention_weight = self.weight.forward(hs, h)
        return self.sum.forward(hs, self.attention_weight)

    def backward(self, dout):
        dhs0, da = self.sum.backward(dout)
        dhs1, dh = self.weight.backward(da)
        return dhs0 + dhs1, dh


class TimeAttention(Layer):
    """:class:`Attention` for each decoder step: ``forward(hs_enc, hs_dec)`` with hs_dec (N, T', H)
    gives the contexts (N, T', H); ``backward`` gives ``(dhs_enc, dhs_dec)``. The weights of
    every step are kept in ``attention_weights``."""

    def __init__(self):
        super().__init__()
        self.layers = self.attention_weights = None

    def forward(self, hs_enc, hs_dec):
        xp = namespace(hs_enc)
        if hs_dec.ndim != 3 or hs_dec.shape[1] == 0:
            raise ShapeError(f"TimeAttention expects decoder states of shape (N, T, H) with T >= 1, got "
                             f"{tuple(hs_dec.shape)}")
        self.layers = [Attention() for _ in range(hs_dec.shape[1])]
        out = [layer.forward(hs_enc, h) for h, layer in zip(xp.unstack(hs_dec, axis=1), self.layers)]
        self.attention_weights = [layer.attention_weight for layer in self.layers]
        return xp.stack(out, axis=1)

    def backward(self, dout):
        xp = namespace(dout)
        dhs_enc, dhs_dec = None, []
        for d, layer in zip(xp.unstack(dout, axis=1), self._cached(self.layers)):
            dhs, dh = layer.backward(d)
            dhs_enc = dhs if dhs_enc is None else dhs_enc + dhs
            dhs_dec.append(dh)
        return dhs_enc, xp.stack(dhs_dec, axis=1)
