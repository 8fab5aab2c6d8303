"""Recurrent layers of "Deep Learning from Scratch 2" over whole sequences: ``TimeRNN``,
``TimeLSTM``, ``TimeGRU`` and ``TimeBiLSTM``.

Input (N, T, D), output (N, T, H) hidden states. The parameters keep the book's names and
layouts: ``Wx`` (D, gates * H), ``Wh`` (H, gates * H), ``b`` (gates * H,), with the gates side by
side in the book's order: LSTM ``[f | g | i | o]``, GRU ``[z | r | h]`` (appendix C).

``stateful=True`` carries the last hidden state (and the LSTM's cell) into the next call
(truncated backpropagation through time: the state is carried, its gradient is not);
``reset_state()`` forgets it, ``set_state(h, c)`` sets it (a seq2seq decoder), and ``dh``
after ``backward`` is the gradient of the first hidden state.

The loop over time keeps each step's values in lists and ``stack``s them (no writes into an
array: jax and dask arrays cannot change). ``x @ Wx + b`` for all time steps is one (N*T, D)
product before the loop, and the parameter gradients one product each after it, from the
stacked per-step gradients: the same sums as the book's per-step accumulation.
"""

from __future__ import annotations

import math

from .backend import Backend, check_same_backend, device, dtype_name, host_dtype, namespace, resolve, time_scan
from .checks import as_rng, is_array, size_arg
from .errors import BackendMismatchError, ConfigError, DTypeError, ShapeError
from .layers import Layer, check_fits, check_param


def sigmoid(x, xp):
    """``1 / (1 + exp(-x))`` as ``0.5 + 0.5 tanh(x / 2)``: no overflow, and cheaper than a branch."""
    return 0.5 + 0.5 * xp.tanh(0.5 * x)


def check_cell(Wx, Wh, b, gates: int, name: str, suffix: str = "") -> int:
    """The hidden size H of a cell with ``gates`` blocks, or a clear error for bad weights."""
    check_param(Wx, f"{name} Wx{suffix}")
    check_param(Wh, f"{name} Wh{suffix}", like=Wx)
    check_param(b, f"{name} b{suffix}", like=Wx)
    H = Wh.shape[0] if Wh.ndim == 2 else -1
    if Wx.ndim != 2 or Wh.ndim != 2 or b.ndim != 1 or Wh.shape[1] != gates * H or Wx.shape[1] != gates * H \
            or b.shape[0] != gates * H or H == 0:
        raise ShapeError(f"{name} needs Wx (D, {gates}H), Wh (H, {gates}H) and b ({gates}H,) for hidden size H; "
                         f"got Wx{suffix} {tuple(Wx.shape)}, Wh{suffix} {tuple(Wh.shape)}, b{suffix} {tuple(b.shape)}")
    return H


def create_cell(name: str, gates: int, D: int, H: int, rng, backend):
    """The book's initial weights: ``randn(D, gH) / sqrt(D)``, ``randn(H, gH) / sqrt(H)``, zero bias."""
    be = backend if isinstance(backend, Backend) else resolve(backend)
    D, H = size_arg(f"{name} input size", D), size_arg(f"{name} hidden size", H)
    check_fits((D + H + 1) * gates * H * (8 + host_dtype(be.dtype).itemsize), f"{name}({D}, {H})")
    rng = as_rng(rng)
    Wx = rng.standard_normal((D, gates * H)) / math.sqrt(D)
    Wh = rng.standard_normal((H, gates * H)) / math.sqrt(H)
    return be.asarray(Wx), be.asarray(Wh), be.zeros((gates * H,))


def check_sequence(xs, Wx, name: str) -> None:
    """A clear error unless ``xs`` is (N, T, D) with T >= 1, in the weights' library, device and dtype."""
    if not is_array(xs):
        raise BackendMismatchError(f"{name} expects an array of shape (N, T, {Wx.shape[0]}), got {type(xs).__name__}")
    if xs.ndim != 3 or xs.shape[2] != Wx.shape[0] or xs.shape[1] == 0:
        raise ShapeError(f"{name} expects a batch of sequences of shape (N, T, {Wx.shape[0]}) with T >= 1, "
                         f"got {tuple(xs.shape)}")
    check_same_backend(xs, Wx, f"{name} input")
    if xs.dtype != Wx.dtype:
        raise DTypeError(f"{name} expects input of its weights' dtype {dtype_name(Wx.dtype)}, got "
                         f"{dtype_name(xs.dtype)}; convert it with xp.astype(xs, xp.{dtype_name(Wx.dtype)})")


def initial(state, N: int, H: int, like, name: str, what: str):
    """The carried ``state`` (checked against the batch), or zeros (N, H) like ``like``."""
    xp = namespace(like)
    if state is None:
        return xp.zeros((N, H), dtype=like.dtype, device=device(like))
    if tuple(state.shape) != (N, H):
        raise ShapeError(f"{name}'s {what} has shape {tuple(state.shape)} but this batch needs ({N}, {H}); "
                         f"a stateful layer keeps its batch size: call reset_state() before a batch of "
                         f"another size")
    return state


def input_grads(xs, dA, Wx, H_prev, xp):
    """``dxs``, ``dWx``, ``dWh``, ``db`` from the per-step gate gradients ``dA`` (N, T, G) and the
    previous hidden states ``H_prev`` (N, T, H), as four products over all steps at once."""
    N, T, D = xs.shape
    G = Wx.shape[1]
    dA2 = xp.reshape(dA, (N * T, G))
    dWx = xp.reshape(xs, (N * T, D)).T @ dA2
    dWh = xp.reshape(H_prev, (N * T, H_prev.shape[2])).T @ dA2
    return xp.reshape(dA2 @ Wx.T, xs.shape), dWx, dWh, xp.sum(dA2, axis=0)


# ---------------------------------------------------------------------- the cells over time
def rnn_forward(Wx, Wh, b, xs, h):
    """``h_t = tanh(h_{t-1} Wh + x_t Wx + b)``: (hs, cache)."""
    xp = namespace(xs)
    N, T, D = xs.shape
    XW = xp.reshape(xp.reshape(xs, (N * T, D)) @ Wx + b, (N, T, -1))
    hs = []
    for xw in xp.unstack(XW, axis=1):
        h = xp.tanh(xw + h @ Wh)
        hs.append(h)
    return hs, None


def rnn_backward(Wx, Wh, xs, h0, hs, cache, dhs):
    """The book's RNN backward over time: ``dt = (dh_t + dh) (1 - h_t^2)``, ``dh = dt Wh^T``."""
    xp = namespace(dhs)
    dh, dts, upstream = None, [], xp.unstack(dhs, axis=1)
    for t in reversed(range(len(hs))):
        d = upstream[t] if dh is None else upstream[t] + dh
        dt = d * (1.0 - hs[t] * hs[t])
        dts.append(dt)
        dh = dt @ Wh.T
    dA = xp.stack(dts[::-1], axis=1)
    H_prev = xp.stack([h0, *hs[:-1]], axis=1)
    return (*input_grads(xs, dA, Wx, H_prev, xp), dh)


def lstm_forward(Wx, Wh, b, xs, h, c):
    """The book's LSTM: ``A = x Wx + h Wh + b`` split ``[f | g | i | o]``;
    ``c' = sigmoid(f) c + tanh(g) sigmoid(i)``, ``h' = sigmoid(o) tanh(c')``: (hs, cs, cache)."""
    xp = namespace(xs)
    N, T, D = xs.shape
    H = Wh.shape[0]
    XW = xp.reshape(xp.reshape(xs, (N * T, D)) @ Wx + b, (N, T, 4 * H))
    scan = time_scan(XW)
    if scan is not None:  # traced by jax: one compiled loop body
        return _lstm_forward_scan(scan, xp, XW, Wh, h, c, H)
    hs, cs, cache = [], [], []
    for xw in xp.unstack(XW, axis=1):
        h, c, gates = _lstm_cell(xw, h, c, Wh, H, xp)
        hs.append(h)
        cs.append(c)
        cache.append(gates)
    return hs, cs, cache


def _lstm_cell(xw, h, c, Wh, H, xp):
    """One step of the LSTM from the input's share ``xw`` (N, 4H): ``(h, c, (f, g, i, o, tanh c))``."""
    A = xw + h @ Wh
    f, i, o = sigmoid(A[:, :H], xp), sigmoid(A[:, 2 * H:3 * H], xp), sigmoid(A[:, 3 * H:], xp)
    g = xp.tanh(A[:, H:2 * H])
    c = f * c + g * i
    tc = xp.tanh(c)
    return o * tc, c, (f, g, i, o, tc)


def _lstm_forward_scan(scan, xp, XW, Wh, h, c, H):
    """:func:`lstm_forward` as one scan over time (the same values, in the same lists)."""
    def step(carry, xw):
        h, c, gates = _lstm_cell(xw, *carry, Wh, H, xp)
        return (h, c), (h, c, *gates)

    _, ys = scan(step, (h, c), xp.permute_dims(XW, (1, 0, 2)))
    hs, cs, *gates = (list(xp.unstack(y, axis=0)) for y in ys)
    return hs, cs, list(zip(*gates, strict=True))


def _lstm_backward_scan(scan, xp, Wh, c0, cs, cache, dhs):
    """The gate gradients (N, T, 4H) and the last ``dh``, ``dc`` of :func:`lstm_backward`, as one
    reverse scan over time."""
    def step(carry, inputs):
        dh, dc = carry
        up, f, g, i, o, tc, c_prev = inputs
        d = up + dh
        ds = d * o * (1.0 - tc * tc) + dc
        dA = xp.concat([ds * c_prev * f * (1.0 - f), ds * i * (1.0 - g * g),
                        ds * g * i * (1.0 - i), d * tc * o * (1.0 - o)], axis=1)
        return (dA @ Wh.T, ds * f), dA

    gates = tuple(xp.stack([step_cache[k] for step_cache in cache], axis=0) for k in range(5))
    zero = xp.zeros_like(c0)
    inputs = (xp.permute_dims(dhs, (1, 0, 2)), *gates, xp.stack([c0, *cs[:-1]], axis=0))
    (dh, dc), dA = scan(step, (zero, zero), inputs, reverse=True)
    return xp.permute_dims(dA, (1, 0, 2)), dh, dc


def lstm_backward(Wx, Wh, xs, h0, c0, hs, cs, cache, dhs):
    """The book's LSTM backward over time; the cell's gradient ``dc`` is carried back too."""
    xp = namespace(dhs)
    scan = time_scan(dhs)
    if scan is not None:  # traced by jax: one compiled loop body
        dA, dh, dc = _lstm_backward_scan(scan, xp, Wh, c0, cs, cache, dhs)
        return (*input_grads(xs, dA, Wx, xp.stack([h0, *hs[:-1]], axis=1), xp), dh, dc)
    dh = dc = None
    dAs, upstream = [], xp.unstack(dhs, axis=1)
    for t in reversed(range(len(hs))):
        f, g, i, o, tc = cache[t]
        d = upstream[t] if dh is None else upstream[t] + dh
        ds = d * o * (1.0 - tc * tc)
        if dc is not None:
            ds = ds + dc
        c_prev = cs[t - 1] if t > 0 else c0
        dA = xp.concat([ds * c_prev * f * (1.0 - f), ds * i * (1.0 - g * g),
                        ds * g * i * (1.0 - i), d * tc * o * (1.0 - o)], axis=1)
        dAs.append(dA)
        dc = ds * f
        dh = dA @ Wh.T
    dA = xp.stack(dAs[::-1], axis=1)
    H_prev = xp.stack([h0, *hs[:-1]], axis=1)
    return (*input_grads(xs, dA, Wx, H_prev, xp), dh, dc)


def gru_forward(Wx, Wh, b, xs, h):
    """The book's GRU (appendix C): ``z = sigmoid(x Wxz + h Whz + bz)``, ``r`` likewise,
    ``h^ = tanh(x Wxh + (r h) Whh + bh)``, ``h' = (1 - z) h + z h^``: (hs, cache)."""
    xp = namespace(xs)
    N, T, D = xs.shape
    H = Wh.shape[0]
    XW = xp.reshape(xp.reshape(xs, (N * T, D)) @ Wx + b, (N, T, 3 * H))
    Wh_zr, Whh = Wh[:, :2 * H], Wh[:, 2 * H:]
    hs, cache = [], []
    for xw in xp.unstack(XW, axis=1):
        zr = sigmoid(xw[:, :2 * H] + h @ Wh_zr, xp)
        z, r = zr[:, :H], zr[:, H:]
        rh = r * h
        h_hat = xp.tanh(xw[:, 2 * H:] + rh @ Whh)
        h = h + z * (h_hat - h)
        hs.append(h)
        cache.append((z, r, rh, h_hat))
    return hs, cache


def gru_backward(Wx, Wh, xs, h0, hs, cache, dhs):
    """The book's GRU backward over time (appendix C), gate gradients stacked ``[z | r | h]``."""
    xp = namespace(dhs)
    H = Wh.shape[0]
    Wh_zr, Whh = Wh[:, :2 * H], Wh[:, 2 * H:]
    dh, dAs, upstream = None, [], xp.unstack(dhs, axis=1)
    for t in reversed(range(len(hs))):
        z, r, rh, h_hat = cache[t]
        h_prev = hs[t - 1] if t > 0 else h0
        d = upstream[t] if dh is None else upstream[t] + dh
        dt_h = d * z * (1.0 - h_hat * h_hat)
        dhr = dt_h @ Whh.T
        dt_z = d * (h_hat - h_prev) * z * (1.0 - z)
        dt_r = dhr * h_prev * r * (1.0 - r)
        dzr = xp.concat([dt_z, dt_r], axis=1)
        dh = d * (1.0 - z) + r * dhr + dzr @ Wh_zr.T
        dAs.append(xp.concat([dzr, dt_h], axis=1))
    dA = xp.stack(dAs[::-1], axis=1)
    N, T, _ = dA.shape
    dxs, dWx, _, db = input_grads(xs, dA, Wx, xp.stack([h0, *hs[:-1]], axis=1), xp)
    dA2 = xp.reshape(dA, (N * T, 3 * H))
    dWh_zr = xp.reshape(xp.stack([h0, *hs[:-1]], axis=1), (N * T, H)).T @ dA2[:, :2 * H]
    RH = xp.stack([c[2] for c in cache], axis=1)
    dWhh = xp.reshape(RH, (N * T, H)).T @ dA2[:, 2 * H:]
    return dxs, dWx, xp.concat([dWh_zr, dWhh], axis=1), db, dh


# ---------------------------------------------------------------------- the layers
class _Recurrent(Layer):
    """Shared by TimeRNN, TimeLSTM and TimeGRU: weights, state, and the book's state methods."""

    gates = 1

    def __init__(self, Wx, Wh, b, stateful: bool = False):
        super().__init__()
        self.H = check_cell(Wx, Wh, b, self.gates, type(self).__name__)
        self.params = {"Wx": Wx, "Wh": Wh, "b": b}
        if not isinstance(stateful, bool):
            raise ConfigError(f"{type(self).__name__} stateful must be True or False, got {stateful!r}")
        self.stateful = stateful
        self.h = self.c = self.dh = None
        self.xs = self.h0 = self.c0 = self.hs = self.cs = self.cache = None

    @classmethod
    def create(cls, input_size: int, hidden_size: int, stateful: bool = False, rng=None,
               backend: Backend | str | None = None):
        """The book's initial weights (``randn / sqrt(fan_in)``, zero bias), drawn on the host."""
        return cls(*create_cell(cls.__name__, cls.gates, input_size, hidden_size, rng, backend), stateful)

    def reset_state(self) -> None:
        self.h = self.c = None

    def set_state(self, h, c=None) -> None:
        for what, a in (("h", h), ("c", c)):
            if a is not None:
                check_same_backend(a, self.params["Wx"], f"{type(self).__name__}.set_state {what}")
                if a.ndim != 2 or a.shape[1] != self.H:
                    raise ShapeError(f"{type(self).__name__}.set_state: {what} must have shape (N, {self.H}), "
                                     f"got {tuple(a.shape)}")
        self.h, self.c = h, c

    def _start(self, xs):
        p = self.params
        check_sequence(xs, p["Wx"], type(self).__name__)
        self.h0 = initial(self.h if self.stateful else None, xs.shape[0], self.H, xs, type(self).__name__,
                          "hidden state h")
        self.xs = xs
        return p["Wx"], p["Wh"], p["b"]

    def _finish(self, hs):
        """The stacked (N, T, H) output; ``h`` keeps the last hidden state (used next time when stateful)."""
        self.hs, self.h = hs, hs[-1]
        return namespace(hs[0]).stack(hs, axis=1)

    def config(self) -> dict:
        return {"stateful": self.stateful}


class TimeRNN(_Recurrent):
    """The book's TimeRNN: ``h_t = tanh(h_{t-1} Wh + x_t Wx + b)`` for t = 1..T."""

    def forward(self, xs, train: bool = True):
        Wx, Wh, b = self._start(xs)
        hs, self.cache = rnn_forward(Wx, Wh, b, xs, self.h0)
        return self._finish(hs)

    def backward(self, dhs):
        p = self.params
        dxs, *g, self.dh = rnn_backward(p["Wx"], p["Wh"], self.xs, self.h0, self._cached(self.hs), None, dhs)
        self.grads.update(zip(("Wx", "Wh", "b"), g))
        return dxs


class TimeGRU(_Recurrent):
    """The book's TimeGRU (appendix C), gates ``[z | r | h]``."""

    gates = 3

    def forward(self, xs, train: bool = True):
        Wx, Wh, b = self._start(xs)
        hs, self.cache = gru_forward(Wx, Wh, b, xs, self.h0)
        return self._finish(hs)

    def backward(self, dhs):
        p = self.params
        dxs, *g, self.dh = gru_backward(p["Wx"], p["Wh"], self.xs, self.h0, self._cached(self.hs), self.cache, dhs)
        self.grads.update(zip(("Wx", "Wh", "b"), g))
        return dxs


class TimeLSTM(_Recurrent):
    """The book's TimeLSTM, gates ``[f | g | i | o]``; ``h`` and the cell ``c`` are carried when stateful."""

    gates = 4

    def forward(self, xs, train: bool = True):
        Wx, Wh, b = self._start(xs)
        self.c0 = initial(self.c if self.stateful else None, xs.shape[0], self.H, xs, "TimeLSTM", "cell state c")
        hs, self.cs, self.cache = lstm_forward(Wx, Wh, b, xs, self.h0, self.c0)
        self.c = self.cs[-1]
        return self._finish(hs)

    def backward(self, dhs):
        p = self.params
        dxs, *g, self.dh, _ = lstm_backward(p["Wx"], p["Wh"], self.xs, self.h0, self.c0, self._cached(self.hs),
                                            self.cs, self.cache, dhs)
        self.grads.update(zip(("Wx", "Wh", "b"), g))
        return dxs


class TimeBiLSTM(Layer):
    """The book's TimeBiLSTM: one LSTM reads the sequence forward, another reads it reversed;
    output ``concat([h_forward, reversed(h_reverse)], axis=2)``, shape (N, T, 2H).

    Parameters: ``Wx_f``, ``Wh_f``, ``b_f`` (forward) and ``Wx_r``, ``Wh_r``, ``b_r`` (reverse),
    each laid out as :class:`TimeLSTM`'s. Not stateful (as in the book's use).
    """

    NAMES = ("Wx_f", "Wh_f", "b_f", "Wx_r", "Wh_r", "b_r")

    def __init__(self, Wx_f, Wh_f, b_f, Wx_r, Wh_r, b_r):
        super().__init__()
        self.H = check_cell(Wx_f, Wh_f, b_f, 4, "TimeBiLSTM", "_f")
        for a, name in ((Wx_r, "Wx_r"), (Wh_r, "Wh_r"), (b_r, "b_r")):
            check_param(a, f"TimeBiLSTM {name}", like=Wx_f)
        if check_cell(Wx_r, Wh_r, b_r, 4, "TimeBiLSTM", "_r") != self.H or Wx_r.shape != Wx_f.shape:
            raise ShapeError(f"TimeBiLSTM's two directions need the same shapes; got Wx_f {tuple(Wx_f.shape)} "
                             f"and Wx_r {tuple(Wx_r.shape)}")
        self.params = dict(zip(self.NAMES, (Wx_f, Wh_f, b_f, Wx_r, Wh_r, b_r)))
        self.runs = None

    @classmethod
    def create(cls, input_size: int, hidden_size: int, rng=None, backend: Backend | str | None = None):
        rng = as_rng(rng)
        fwd = create_cell("TimeBiLSTM", 4, input_size, hidden_size, rng, backend)
        return cls(*fwd, *create_cell("TimeBiLSTM", 4, input_size, hidden_size, rng, backend))

    def forward(self, xs, train: bool = True):
        p = self.params
        check_sequence(xs, p["Wx_f"], "TimeBiLSTM")
        xp = namespace(xs)
        h0 = initial(None, xs.shape[0], self.H, xs, "TimeBiLSTM", "h")
        self.runs = []
        outs = []
        for suffix, x in (("_f", xs), ("_r", xp.flip(xs, axis=1))):
            hs, cs, cache = lstm_forward(p["Wx" + suffix], p["Wh" + suffix], p["b" + suffix], x, h0, h0)
            self.runs.append((x, h0, hs, cs, cache))
            outs.append(xp.stack(hs, axis=1))
        return xp.concat([outs[0], xp.flip(outs[1], axis=1)], axis=2)

    def backward(self, dout):
        p, H = self.params, self.H
        xp = namespace(dout)
        runs = self._cached(self.runs)
        dxs = []
        upstream = (("_f", dout[:, :, :H]), ("_r", xp.flip(dout[:, :, H:], axis=1)))
        for (suffix, d), (x, h0, hs, cs, cache) in zip(upstream, runs):
            dx, *g, _, _ = lstm_backward(p["Wx" + suffix], p["Wh" + suffix], x, h0, h0, hs, cs, cache, d)
            self.grads.update(zip(("Wx" + suffix, "Wh" + suffix, "b" + suffix), g))
            dxs.append(dx)
        return dxs[0] + xp.flip(dxs[1], axis=1)
