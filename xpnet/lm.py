"""The LSTM language model of "Deep Learning from Scratch 2" (chapter 6, ``BetterRnnlm``):
``TimeEmbedding`` (V, D), dropout, two ``TimeLSTM`` layers with dropout after each, and an output
layer to scores over the vocabulary, whose weight is the embedding's table transposed (weight
tying: one (V, D) array, trained once per step and saved once) when D equals H.

A model quacks like :class:`~xpnet.Sequential` where training needs it (``params`` numbered
``W1`` the table, ``Wx1``, ``Wh1``, ``b1`` the first LSTM, ``Wx2``... the second, ``b3`` the
output bias; ``grads``; ``loss(x, t)``; ``backward``). ``x`` (N, T) are word ids and ``t``
(N, T) the next word at each position. Each window starts from a zero state here (the trainer
shuffles windows); :meth:`generate` runs the LSTMs statefully, one word at a time. The
perplexity is ``exp`` of the mean loss.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import Backend, from_host_like, namespace, resolve, to_numpy
from .checks import as_rng, is_array, number_arg, size_arg
from .errors import ConfigError, DTypeError, ShapeError
from .model import _checked_views, describe_layers
from .recurrent import TimeLSTM
from .sequence import TimeAffine, TimeDropout, TimeEmbedding, TimeSoftmaxWithLoss, TimeTiedAffine, check_indices


class LanguageModel:
    """The book's better RNNLM; see the module's docstring. Built from its seven layers
    (``create`` draws them as the book does)."""

    kind = "lstm-lm"
    takes_ids = True
    eager_metrics = True  # a compiled step evaluates it eagerly (loops over batches and time steps)
    reports_perplexity = True  # the trainer records exp(loss) per epoch
    in_features = out_features = input_shape = None
    helper_layers: tuple = ()
    NAMES = ("embed", "drop1", "lstm1", "drop2", "lstm2", "drop3", "out")

    def __init__(self, embed, drop1, lstm1, drop2, lstm2, drop3, out):
        layers = [embed, drop1, lstm1, drop2, lstm2, drop3, out]
        self.check_layout([type(layer).__name__ for layer in layers],
                          [{k: tuple(v.shape) for k, v in getattr(layer, "params", {}).items()} for layer in layers])
        self.layers = layers
        self.embed, self.lstm1, self.lstm2, self.out = embed, lstm1, lstm2, out
        self.dropouts = (drop1, drop2, drop3)
        self.tied = isinstance(out, TimeTiedAffine)
        if self.tied:
            out.embedding = embed
        embed.check_indices = False  # the model checks the ids once per call
        lstm1.stateful = lstm2.stateful = False
        self.loss_layer = TimeSoftmaxWithLoss(check_labels=False)
        self._views = _checked_views(layers)

    @classmethod
    def check_layout(cls, types: list, shapes: list) -> None:
        """Refuse layers that do not make this model (the seven in order, with fitting sizes)."""
        want = ["TimeEmbedding", "TimeDropout", "TimeLSTM", "TimeDropout", "TimeLSTM", "TimeDropout"]
        if len(types) != 7 or list(types[:6]) != want or types[6] not in ("TimeAffine", "TimeTiedAffine"):
            raise ConfigError(f"LanguageModel takes seven layers: {', '.join(want)}, then TimeAffine or "
                              f"TimeTiedAffine; got {', '.join(types)}")
        emb, _, l1, _, l2, _, out = (dict(s) for s in shapes)
        (V, D), H = emb["W"], l1["Wh"][0]
        fits = {"first LSTM input": (l1["Wx"][0], D), "second LSTM input": (l2["Wx"][0], H),
                "second LSTM hidden size": (l2["Wh"][0], H), "output bias (vocabulary)": (out["b"][0], V)}
        if types[6] == "TimeAffine":
            fits["output weight"] = (tuple(out["W"]), (H, V))
        elif D != H:
            fits["tied table's dimension (= hidden size)"] = (D, H)
        bad = [f"{what} is {got}, expected {exp}" for what, (got, exp) in fits.items() if got != exp]
        if bad:
            raise ShapeError(f"LanguageModel's layers do not fit together: {'; '.join(bad)}. Build it with "
                             f"LanguageModel.create(vocab_size, wordvec_size, hidden_size)")

    @classmethod
    def create(cls, vocab_size: int, wordvec_size: int = 650, hidden_size: int = 650, dropout: float = 0.5,
               tie: bool | None = None, rng=None, backend: Backend | str | None = None):
        """The book's initial weights from ``rng`` (a seed or a numpy Generator): the table
        ``0.01 randn``, LSTMs and the untied output ``randn / sqrt(fan_in)``, zero biases.
        ``tie`` (default: when ``wordvec_size == hidden_size``) shares the table with the output."""
        V, D = size_arg("LanguageModel vocab_size", vocab_size), size_arg("LanguageModel wordvec_size", wordvec_size)
        H = size_arg("LanguageModel hidden_size", hidden_size)
        dropout = number_arg("LanguageModel dropout", dropout)
        tie = (D == H) if tie is None else tie
        if not isinstance(tie, bool) or (tie and D != H):
            raise ConfigError(f"LanguageModel tie must be True or False, and True needs wordvec_size == hidden_size "
                              f"(the table is the output's weight); got tie={tie!r}, D={D}, H={H}")
        be = backend if isinstance(backend, Backend) else resolve(backend)
        rng = as_rng(rng)
        embed = TimeEmbedding.create(V, D, rng=rng, backend=be)
        lstm1, lstm2 = TimeLSTM.create(D, H, rng=rng, backend=be), TimeLSTM.create(H, H, rng=rng, backend=be)
        out = TimeTiedAffine(be.zeros((V,))) if tie else TimeAffine.create(H, V, rng=rng, backend=be)
        drops = [TimeDropout(dropout, rng=np.random.default_rng(rng.integers(2**63))) for _ in range(3)]
        return cls(embed, drops[0], lstm1, drops[1], lstm2, drops[2], out)

    # ------------------------------------------------------------------ what Sequential has
    params = property(lambda self: self._views[0], doc="The parameters, a live mapping onto the layers'.")
    state = property(lambda self: self._views[1])

    @property
    def grads(self) -> dict:
        """The gradients of the last ``backward``; with tying, the table's is the sum of the
        embedding's and the output layer's."""
        g = dict(self._views[2].items())
        if self.tied:
            g["W1"] = g["W1"] + self.out.dW
        return g

    @property
    def reference_array(self):
        return self.embed.params["W"]

    @property
    def dtype(self):
        return self.reference_array.dtype

    @property
    def vocab_size(self) -> int:
        return int(self.embed.params["W"].shape[0])

    def describe(self) -> list[dict]:
        return describe_layers(self.layers)

    def __repr__(self) -> str:
        V, D = self.embed.params["W"].shape
        return (f"LanguageModel(vocab_size={V}, wordvec_size={D}, hidden_size={self.lstm1.H}, "
                f"dropout={self.dropouts[0].ratio}, tied={self.tied})")

    # ------------------------------------------------------------------ checks
    def check_input(self, x, where: str = "word ids x"):
        if not is_array(x):
            raise DTypeError(f"LanguageModel {where} must be an integer array of shape (N, T), got "
                             f"{type(x).__name__}")
        if x.ndim != 2 or 0 in x.shape:
            raise ShapeError(f"LanguageModel {where} must have shape (N, T) with N, T >= 1, got {tuple(x.shape)}")
        return check_indices(x, self.vocab_size, f"LanguageModel {where}", self.reference_array)

    def check_pair(self, x, t):
        """``(x, t)`` as word ids of one shape (N, T), in the vocabulary, on the model's device."""
        x, t = self.check_input(x), self.check_input(t, "next-word ids t")
        if tuple(t.shape) != tuple(x.shape):
            raise ShapeError(f"LanguageModel: next-word ids t of shape {tuple(t.shape)} for words x of shape "
                             f"{tuple(x.shape)}; give one next word per word")
        return x, t

    # ------------------------------------------------------------------ passes
    def scores(self, x, train: bool = True):
        """Scores (N, T, V) of the next word at every position."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def loss(self, x, t, train: bool = True, check: bool = True):
        """Mean cross-entropy of the next word (a 0-d array); ``exp`` of it is the perplexity."""
        if check:
            x, t = self.check_pair(x, t)
        return self.loss_layer.forward(self.scores(x, train), t, check=False)

    def backward(self, dout=1.0, input_grad: bool = False) -> None:
        """Fill every layer's ``grads`` from the last ``loss`` (word ids have no gradient)."""
        d = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            d = layer.backward(d)

    def gradient(self, x, t, check: bool = True) -> dict:
        self.loss(x, t, train=True, check=check)
        self.backward()
        return self.grads

    def metrics(self, x, t, batch_size: int = 256):
        """Mean loss and the fraction of next words guessed right (top 1) on ``(x, t)``, as two
        0-d arrays (no host sync; the ids are trusted: checked once beforehand)."""
        xp = namespace(x)
        n = x.shape[0]
        loss_sum = hits = None
        for i in range(0, n, batch_size):
            xb, tb = x[i:min(i + batch_size, n), ...], t[i:min(i + batch_size, n), ...]
            score = self.scores(xb, train=False)
            loss = self.loss_layer.forward(score, tb, check=False) * xb.shape[0]
            right = xp.mean(xp.astype(xp.astype(xp.argmax(score, axis=2), tb.dtype) == tb, loss.dtype), axis=1)
            right = xp.sum(right)
            loss_sum, hits = (loss, right) if loss_sum is None else (loss_sum + loss, hits + right)
        return loss_sum / n, hits / n

    def generate(self, start_ids, length: int, rng=None, skip_ids=(), temperature: float = 1.0) -> list[int]:
        """``length`` word ids sampled one at a time after ``start_ids`` (a list of ids): each
        next word is drawn on the host from the softmax of the scores (over ``temperature``), ids
        in ``skip_ids`` never, with ``rng`` (a seed or a Generator). The LSTMs run statefully
        from a zero state and are stateless again afterwards."""
        length = size_arg("generate length", length)
        temperature = number_arg("generate temperature", temperature)
        if temperature <= 0:
            raise ConfigError(f"generate temperature must be > 0, got {temperature}")
        ids = [int(i) for i in start_ids]
        if not ids or any(not 0 <= i < self.vocab_size for i in ids):
            raise ConfigError(f"generate start_ids must be one or more ids in [0, {self.vocab_size - 1}], got "
                              f"{list(start_ids)[:8]}")
        skip = np.zeros(self.vocab_size, dtype=bool)
        skip[[int(i) for i in skip_ids]] = True
        rng = as_rng(rng)
        ref = self.reference_array
        try:
            for lstm in (self.lstm1, self.lstm2):
                lstm.stateful = True
                lstm.reset_state()
            score = self.scores(from_host_like(np.asarray([ids], dtype=np.int64), ref), train=False)
            out = []
            for _ in range(length):
                s = to_numpy(score[0, -1, :]).astype(np.float64) / temperature
                p = np.exp(s - s.max())
                p[skip] = 0.0
                if not p.sum() > 0:
                    raise ConfigError("generate: skip_ids leave no word to draw")
                nxt = int(rng.choice(self.vocab_size, p=p / p.sum()))
                out.append(nxt)
                score = self.scores(from_host_like(np.asarray([[nxt]], dtype=np.int64), ref), train=False)
        finally:
            for lstm in (self.lstm1, self.lstm2):
                lstm.stateful = False
                lstm.reset_state()
        return out


def perplexity(loss: float) -> float:
    """``exp(loss)``, inf when it overflows."""
    return math.exp(loss) if loss < 700 else math.inf


MODELS = {LanguageModel.kind: LanguageModel}

__all__ = ["MODELS", "LanguageModel", "perplexity"]
