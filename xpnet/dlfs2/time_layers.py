"""The second book's ``common.time_layers`` in its list form, on xpnet's sequence layers.

Each layer keeps the book's constructor, ``params`` / ``grads`` lists and call forms, as
:mod:`xpnet.dlfs2.layers` does; the maths is :mod:`xpnet.sequence`'s and, for the recurrent
layers, :mod:`xpnet.recurrent`'s: ``TimeEmbedding``, ``TimeAffine``, ``TimeSoftmaxWithLoss``,
``TimeDropout`` (the book's ``train_flg`` attribute), ``TimeRNN``, ``TimeLSTM``, ``TimeGRU``
(``stateful``, ``reset_state``, ``set_state``, ``h``, ``c``, ``dh``), ``TimeBiLSTM`` and chapter 8's
``TimeAttention`` (:mod:`xpnet.attention`).

A layer whose xpnet class is not in this version of xpnet, and the book's single-step cells
(``RNN``, ``LSTM``, ``GRU``) and its ``Simple_*`` / ``TimeSigmoidWithLoss`` helpers, are named
here and raise :class:`ConfigError` saying so when used, rather than an ``ImportError`` with no
explanation.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .arrays import like, mutable, np, out, raw
from .layers import _sequence, _Wrapped

BOOK_NAMES = ("RNN", "TimeRNN", "LSTM", "TimeLSTM", "GRU", "TimeGRU", "TimeEmbedding", "TimeAffine",
              "TimeSoftmaxWithLoss", "TimeDropout", "TimeBiLSTM", "TimeSigmoidWithLoss", "Simple_TimeAffine",
              "Simple_TimeSoftmaxWithLoss", "TimeAttention")


def _xpnet_class(module: str, name: str):
    """xpnet's ``module.name``, or None where this version of xpnet does not have it."""
    try:
        return getattr(importlib.import_module(f"xpnet.{module}"), name, None)
    except ImportError:
        return None


def _built(module: str, name: str, *arrays, **kw):
    cls = _xpnet_class(module, name)
    if cls is None:
        raise ConfigError(f"xpnet.dlfs2.time_layers.{name} is not in this version of xpnet yet: its maths "
                          f"comes with xpnet.{module}")
    return cls(*(raw(a) for a in arrays), **kw)


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


class TimeAffine(_Wrapped):
    """``out[n, t] = xs[n, t] W + b``: (N, T, D) in, (N, T, M) out; ``grads = [dW, db]``."""

    names, cached = ("W", "b"), {"x": "x"}

    def __init__(self, W, b):
        W, b = mutable(W, "TimeAffine W"), mutable(b, "TimeAffine b")
        super().__init__(_built("sequence", "TimeAffine", W, b), W, b)


class TimeSoftmaxWithLoss(_Wrapped):
    """Softmax cross-entropy at every time step, averaged over the steps whose target is not
    ``ignore_label`` (-1); targets (N, T) word ids or one-hot (N, T, V)."""

    cached = {"ys": "y", "mask": "mask"}

    def __init__(self):
        super().__init__(_built("sequence", "TimeSoftmaxWithLoss"))
        self.ignore_label = self.layer.ignore_label

    def forward(self, xs, ts):
        self.layer.ignore_label = self.ignore_label
        return out(self.layer.forward(raw(xs), raw(ts)))

    def backward(self, dout=1):
        return out(self.layer.backward(float(dout)))


class TimeDropout(_Wrapped):
    """The book's inverted dropout over (N, T, D): training (``train_flg = True``, the book's
    attribute a model sets) ``xs * mask / (1 - dropout_ratio)``, else ``xs`` unchanged. Masks come
    from the books' ``np.random``."""

    cached = {"mask": "mask"}

    def __init__(self, dropout_ratio=0.5):
        super().__init__(_built("sequence", "TimeDropout", ratio=dropout_ratio))
        self.dropout_ratio = self.layer.ratio
        self.train_flg = True

    def forward(self, xs):
        self.layer.rng = np.random.state
        return out(self.layer.forward(raw(xs), train=bool(self.train_flg)))


class _TimeRecurrent(_Wrapped):
    """The book's time-recurrent layers: ``params = [Wx, Wh, b]``, ``stateful`` carries ``h``
    (and an LSTM's ``c``) from one ``forward`` to the next; ``dh`` is the gradient of the first
    hidden state after ``backward``."""

    names, cached, kind = ("Wx", "Wh", "b"), {"h": "h", "c": "c", "dh": "dh", "hs": "hs"}, ""

    def __init__(self, Wx, Wh, b, stateful=False):
        arrays = [mutable(a, f"{self.kind} {n}") for a, n in zip((Wx, Wh, b), self.names)]
        super().__init__(_built("recurrent", self.kind, *arrays, stateful=stateful), *arrays)
        self.stateful = self.layer.stateful

    def set_state(self, h, c=None):
        self.layer.set_state(None if h is None else raw(h), None if c is None else raw(c))

    def reset_state(self):
        self.layer.reset_state()

    def forward(self, xs):
        self._load()
        self.layer.stateful = bool(self.stateful)
        return out(self.layer.forward(like(xs, self.params[0])))


class TimeRNN(_TimeRecurrent):
    """``h_t = tanh(h_{t-1} Wh + x_t Wx + b)`` over T steps."""

    kind = "TimeRNN"


class TimeLSTM(_TimeRecurrent):
    """The book's LSTM over T steps, gates ``[f | g | i | o]`` along the 4H columns."""

    kind = "TimeLSTM"


class TimeGRU(_TimeRecurrent):
    """The book's GRU over T steps (appendix C), gates ``[z | r | h]``."""

    kind = "TimeGRU"


class TimeBiLSTM(_Wrapped):
    """Two LSTMs, forward and reversed; output (N, T, 2H), ``params`` the six arrays of both."""

    names = ("Wx_f", "Wh_f", "b_f", "Wx_r", "Wh_r", "b_r")

    def __init__(self, Wx1, Wh1, b1, Wx2, Wh2, b2):
        arrays = [mutable(a, f"TimeBiLSTM {n}") for a, n in zip((Wx1, Wh1, b1, Wx2, Wh2, b2), self.names)]
        super().__init__(_built("recurrent", "TimeBiLSTM", *arrays), *arrays)


class TimeAttention(_Wrapped):
    """Chapter 8's attention at every decoder step: ``forward(hs_enc, hs_dec)`` gives the context
    vectors (N, T_dec, H); ``backward(dout)`` gives ``(dhs_enc, dhs_dec)``; no parameters.
    ``attention_weights`` holds each step's weights (N, T_enc) after ``forward``."""

    def __init__(self):
        super().__init__(_built("attention", "TimeAttention"))

    def forward(self, hs_enc, hs_dec):
        return out(self.layer.forward(raw(hs_enc), raw(hs_dec)))

    def backward(self, dout):
        dhs_enc, dhs_dec = self.layer.backward(raw(dout))
        return out(dhs_enc), out(dhs_dec)

    @property
    def attention_weights(self):
        weights = self.layer.attention_weights
        return None if weights is None else [out(a) for a in weights]


_PRESENT = {"TimeEmbedding": TimeEmbedding, "TimeAffine": TimeAffine, "TimeSoftmaxWithLoss": TimeSoftmaxWithLoss,
            "TimeDropout": TimeDropout, "TimeRNN": TimeRNN, "TimeLSTM": TimeLSTM, "TimeGRU": TimeGRU,
            "TimeBiLSTM": TimeBiLSTM, "TimeAttention": TimeAttention}
_MODULE = {"TimeAffine": "sequence", "TimeSoftmaxWithLoss": "sequence", "TimeDropout": "sequence",
           "TimeRNN": "recurrent", "TimeLSTM": "recurrent", "TimeGRU": "recurrent", "TimeBiLSTM": "recurrent",
           "TimeAttention": "attention"}
__all__ = [name for name in _PRESENT if name not in _MODULE or _xpnet_class(_MODULE[name], name) is not None]
PENDING = tuple(name for name in BOOK_NAMES if name not in __all__)
for _name in PENDING:
    globals().pop(_name, None)  # used, they say they are not here (module __getattr__ below)
del _name


def _pending(name: str):
    def refuse(*args, **kwargs):
        raise ConfigError(f"xpnet.dlfs2.time_layers.{name} is not in this version of xpnet yet: its maths "
                          f"comes with xpnet's sequence layers. Present: {', '.join(__all__)}")

    refuse.__name__ = refuse.__qualname__ = name
    return refuse


def __getattr__(name: str):
    if name in PENDING:
        return _pending(name)
    raise AttributeError(f"xpnet.dlfs2.time_layers has no {name!r}; the book's time layers are "
                         f"{', '.join(BOOK_NAMES)}")
