"""W5's contenders: the second book's LSTM language model step (Embedding -> LSTM -> Affine ->
Softmax-with-Loss over every time step; forward, backward and an SGD update), batch 20 x 35
time steps, word vectors and hidden 650, vocabulary 10,000, float32, synthetic token ids.

* ``numpy textbook``: the book's way in NumPy, written here: ``TimeEmbedding`` as one
  ``Embedding`` a time step (backward: the step's ``dW`` zeroed, ``np.add.at``, added to the
  total), ``TimeLSTM`` as a loop of LSTM cells (gates in the book's order f, g, i, o; one
  ``x Wx + h Wh + b`` a step; backward in reverse, gradients summed), ``TimeAffine`` as one
  matmul over the (N*T, H) rows, the book's ``TimeSoftmaxWithLoss``, ``p -= lr * g``. One
  ``dW`` buffer serves every time step's Embedding (the book gives each its own: 35 x 26 MB).
* ``torch native``: ``nn.Embedding``, ``nn.LSTM`` (batch_first), ``nn.Linear``,
  ``F.cross_entropy``, ``optim.SGD``, one thread.
* ``xpnet[<backend>]`` and ``xpnet[jax] compiled step``: xpnet's sequence layers
  (:mod:`xpnet.sequence`) in a ``Sequential``; left out with the reason where that module is
  absent.

Every contender starts from the initial state h = c = 0 each batch and from the same weights
(:func:`init_lstm_weights`).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ..backend import to_numpy
from ..errors import DataError
from .contenders import Contender, Unavailable, XPNet, XPNetCompiled
from .workloads import LR

SEQ_MISSING = "this installation lacks the sequence layers"


def init_lstm_weights(w, seed: int = 1):
    """The book's initial scales, float32: embedding N(0, 0.01^2); ``Wx``, ``Wh`` and the
    Affine's ``W`` with std 1/sqrt(fan-in); zero biases. LSTM gates in the book's order f, g, i, o."""
    V, D, H, _ = w.sizes
    rng = np.random.default_rng(seed)
    f = np.float32
    E = (rng.standard_normal((V, D)) / 100).astype(f)
    Wx = (rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype(f)
    Wh = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(f)
    b = np.zeros(4 * H, f)
    Wa = (rng.standard_normal((H, V)) / np.sqrt(H)).astype(f)
    return E, Wx, Wh, b, Wa, np.zeros(V, f)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


class NumpyLSTMTextbook(Contender):
    """W5's step as the book writes it in NumPy (see the module's docstring)."""

    name = "numpy textbook"

    def __init__(self, w, X, T):
        self.X, self.T, self.B = X, T, w.batch
        self.params = [a.copy() for a in init_lstm_weights(w)]
        self.dW_step = np.zeros_like(self.params[0])  # one Embedding's dW, reused each time step

    def _lstm_forward(self, xs):
        _, Wx, Wh, b, _, _ = self.params
        N, T, _ = xs.shape
        H = Wh.shape[0]
        hs = np.empty((N, T, H), dtype=np.float32)
        h, c = np.zeros((N, H), np.float32), np.zeros((N, H), np.float32)
        caches = []
        for t in range(T):
            x = xs[:, t, :]
            A = x @ Wx + h @ Wh + b
            f, g, i, o = _sigmoid(A[:, :H]), np.tanh(A[:, H:2 * H]), _sigmoid(A[:, 2 * H:3 * H]), _sigmoid(A[:, 3 * H:])
            c_next = f * c + g * i
            h_next = o * np.tanh(c_next)
            caches.append((x, h, c, i, f, g, o, c_next))
            h, c = h_next, c_next
            hs[:, t, :] = h
        return hs, caches

    def _lstm_backward(self, dhs, caches, D):
        _, Wx, Wh, _, _, _ = self.params
        N, T, H = dhs.shape
        dxs = np.empty((N, T, D), dtype=np.float32)
        dh, dc = 0, 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            x, h_prev, c_prev, i, f, g, o, c_next = caches[t]
            dh_next = dhs[:, t, :] + dh
            tanh_c = np.tanh(c_next)
            ds = dc + (dh_next * o) * (1 - tanh_c ** 2)
            dc = ds * f
            di, df, do, dg = ds * g, ds * c_prev, dh_next * tanh_c, ds * i
            di *= i * (1 - i)
            df *= f * (1 - f)
            do *= o * (1 - o)
            dg *= 1 - g ** 2
            dA = np.hstack((df, dg, di, do))
            for k, gk in enumerate((x.T @ dA, h_prev.T @ dA, dA.sum(axis=0))):
                grads[k] += gk
            dxs[:, t, :] = dA @ Wx.T
            dh = dA @ Wh.T
        return dxs, grads

    def step(self, i):
        B = self.B
        xs, ts = self.X[i * B:(i + 1) * B], self.T[i * B:(i + 1) * B]
        E, Wx, Wh, b, Wa, ba = self.params
        N, T = xs.shape
        D = E.shape[1]
        emb = np.empty((N, T, D), dtype=np.float32)  # TimeEmbedding
        for t in range(T):
            emb[:, t, :] = E[xs[:, t]]
        hs, caches = self._lstm_forward(emb)
        rh = hs.reshape(N * T, -1)  # TimeAffine
        scores = rh @ Wa + ba
        s = scores - scores.max(axis=1, keepdims=True)  # TimeSoftmaxWithLoss
        ys = np.exp(s)
        ys /= ys.sum(axis=1, keepdims=True)
        tf = ts.reshape(N * T)
        self.loss = -np.sum(np.log(ys[np.arange(N * T), tf])) / (N * T)
        dx = ys
        dx[np.arange(N * T), tf] -= 1
        dx /= N * T
        dba, dWa = dx.sum(axis=0), rh.T @ dx
        dhs = (dx @ Wa.T).reshape(N, T, -1)
        demb, (dWx, dWh, db) = self._lstm_backward(dhs, caches, D)
        dE = 0
        for t in range(T):  # TimeEmbedding.backward: each step's Embedding gradient, summed
            dW = self.dW_step
            dW[...] = 0
            np.add.at(dW, xs[:, t], demb[:, t, :])
            dE += dW
        for p, g in zip(self.params, (dE, dWx, dWh, db, dWa, dba), strict=True):
            p -= LR * g


class TorchLSTM(Contender):
    """W5 in PyTorch as its users write it: nn.Embedding, nn.LSTM, nn.Linear, cross_entropy, SGD."""

    name = "torch native"
    lib = "torch"

    def __init__(self, w, X, T):
        import torch

        self.torch, self.B = torch, w.batch
        V, D, H, _ = w.sizes
        E, Wx, Wh, b, Wa, ba = init_lstm_weights(w)
        self.emb = torch.nn.Embedding(V, D)
        self.lstm = torch.nn.LSTM(D, H, batch_first=True)
        self.fc = torch.nn.Linear(H, V)
        order = [2, 0, 1, 3]  # torch's gates i, f, g, o from the book's f, g, i, o

        def gates(a):
            return np.concatenate([a[..., k * H:(k + 1) * H] for k in order], axis=-1)

        with torch.no_grad():
            for dst, src in ((self.emb.weight, E), (self.lstm.weight_ih_l0, gates(Wx).T),
                             (self.lstm.weight_hh_l0, gates(Wh).T), (self.lstm.bias_ih_l0, gates(b)),
                             (self.lstm.bias_hh_l0, np.zeros_like(b)), (self.fc.weight, Wa.T), (self.fc.bias, ba)):
                dst.copy_(torch.from_numpy(np.ascontiguousarray(src)))
        params = [p for m in (self.emb, self.lstm, self.fc) for p in m.parameters()]
        self.opt = torch.optim.SGD(params, lr=LR)
        self.X, self.T = torch.from_numpy(X), torch.from_numpy(T)

    def step(self, i):
        F, B = self.torch.nn.functional, self.B
        xs, ts = self.X[i * B:(i + 1) * B], self.T[i * B:(i + 1) * B]
        self.opt.zero_grad(set_to_none=True)
        hs, _ = self.lstm(self.emb(xs))
        scores = self.fc(hs)
        loss = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), ts.reshape(-1))
        loss.backward()
        self.opt.step()
        self.loss = loss.detach()


SEQUENCE_LAYERS = ("TimeEmbedding", "TimeLSTM", "TimeAffine", "TimeSoftmaxWithLoss")


def sequence_layers() -> dict:
    """xpnet's sequence layers by name (from :mod:`xpnet.sequence`, the LSTM possibly from
    :mod:`xpnet.recurrent`), or :class:`Unavailable` naming what this installation lacks."""
    found: dict = {}
    for mod in ("xpnet.sequence", "xpnet.recurrent"):
        if importlib.util.find_spec(mod) is not None:
            m = importlib.import_module(mod)
            found.update({n: getattr(m, n) for n in SEQUENCE_LAYERS if n not in found and hasattr(m, n)})
    missing = [n for n in SEQUENCE_LAYERS if n not in found]
    if missing:
        raise Unavailable(f"{SEQ_MISSING}: no {', '.join(missing)}")
    return found


class XPNetLSTM(XPNet):
    """W5 with xpnet's layers: TimeEmbedding, TimeLSTM, TimeAffine; TimeSoftmaxWithLoss."""

    def layers(self, w) -> list:
        seq = sequence_layers()
        E, Wx, Wh, b, Wa, ba = (self.be.asarray(a) for a in init_lstm_weights(w))
        embed = seq["TimeEmbedding"](E)
        ids = to_numpy(self.X)
        if ids.size and (ids.min() < 0 or ids.max() >= w.sizes[0]):
            raise DataError(f"W5's word ids must lie in [0, {w.sizes[0]}), got {ids.min()}..{ids.max()}")
        embed.check_indices = False  # checked once above, as the other rows pass check=False (and traceable)
        return [embed, seq["TimeLSTM"](Wx, Wh, b), seq["TimeAffine"](Wa, ba)]

    def loss(self):
        return sequence_layers()["TimeSoftmaxWithLoss"]()


class XPNetLSTMCompiled(XPNetCompiled):
    """W5 with xpnet's layers through :func:`xpnet.compile_step` (jax: ``jax.jit`` per step)."""

    eager = XPNetLSTM


# W5's contenders: the hand-written baselines, xpnet's eager rows, xpnet's compiled row
CONTENDERS = (NumpyLSTMTextbook, TorchLSTM, XPNetLSTM, ("xpnet[jax] compiled step", XPNetLSTMCompiled, False))
