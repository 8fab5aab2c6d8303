"""The second book's ``common.time_layers`` in its list form, on xpnet's sequence layers.

Each layer keeps the book's constructor, ``params`` / ``grads`` lists and call forms, as
:mod:`xpnet.dlfs2.layers` does; the maths is :mod:`xpnet.sequence`'s (and, for the recurrent
layers, :mod:`xpnet.recurrent`'s).

Present: ``TimeEmbedding``. The book's other time layers (``RNN``, ``TimeRNN``, ``LSTM``,
``TimeLSTM``, ``GRU``, ``TimeGRU``, ``TimeAffine``, ``TimeSoftmaxWithLoss``, ``TimeDropout``,
``TimeBiLSTM``, ``TimeSigmoidWithLoss``) are named here and raise :class:`ConfigError` saying
they are not in this xpnet yet, rather than an ``ImportError`` with no explanation.
"""

from __future__ import annotations

from ..errors import ConfigError
from .arrays import mutable, out, raw
from .layers import _sequence, _Wrapped

__all__ = ["TimeEmbedding"]

PENDING = ("RNN", "TimeRNN", "LSTM", "TimeLSTM", "GRU", "TimeGRU", "TimeAffine", "TimeSoftmaxWithLoss",
           "TimeDropout", "TimeBiLSTM", "TimeSigmoidWithLoss", "Simple_TimeAffine", "Simple_TimeSoftmaxWithLoss")


class TimeEmbedding(_Wrapped):
    """``out[n, t] = W[xs[n, t]]``: (N, T) word ids in, (N, T, D) vectors out; backward fills
    ``grads[0]`` (repeated words accumulated) and returns None."""

    names, cached = ("W",), {"idx": "idx"}

    def __init__(self, W):
        W = mutable(W, "TimeEmbedding W")
        super().__init__(_sequence().TimeEmbedding(raw(W)), W)

    def forward(self, xs):
        self._load()
        return out(self.layer.forward(raw(xs)))

    def backward(self, dout):
        super().backward(dout)
        return None


def _pending(name: str):
    def refuse(*args, **kwargs):
        raise ConfigError(f"xpnet.dlfs2.time_layers.{name} is not in this version of xpnet yet: its maths "
                          f"comes with xpnet's recurrent layers. Present: {', '.join(__all__)}")

    refuse.__name__ = refuse.__qualname__ = name
    return refuse


def __getattr__(name: str):
    if name in PENDING:
        return _pending(name)
    raise AttributeError(f"xpnet.dlfs2.time_layers has no {name!r}; the book's time layers are "
                         f"{', '.join(__all__ + list(PENDING))}")
