"""Hand-written NumPy float64 oracles in the textbook's form.

Independent of xpnet's code: each is the formula as the book states it, so a test that
compares xpnet on any backend with these catches a wrong formula, not only a port error.
"""

from __future__ import annotations

import numpy as np


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def one_hot(t, c):
    out = np.zeros((t.size, c))
    out[np.arange(t.size), t] = 1.0
    return out


def cross_entropy(scores, t):
    """Mean cross-entropy of softmax(scores); ``t`` integer labels."""
    y = softmax(scores.astype(np.float64))
    return -np.mean(np.log(y[np.arange(len(t)), t]))


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free identity


def affine_forward(x, W, b):
    return x.reshape(x.shape[0], -1) @ W + b


def affine_backward(x, W, dout):
    x2 = x.reshape(x.shape[0], -1)
    return (dout @ W.T).reshape(x.shape), x2.T @ dout, dout.sum(axis=0)


def batchnorm_forward(x, gamma, beta, eps=1e-7):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def batchnorm_backward(x, gamma, dout, eps=1e-7):
    """The closed form of d/dx of gamma * xhat (every term written out)."""
    n = x.shape[0]
    mu, var = x.mean(axis=0), x.var(axis=0)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    dxhat = dout * gamma
    dx = inv / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


class Optim:
    """Textbook update rules on a dict of float64 arrays, in place."""

    def __init__(self, name, lr, weight_decay=0.0, momentum=0.9, decay=0.99, b1=0.9, b2=0.999, eps=1e-7):
        self.name, self.lr, self.wd = name, lr, weight_decay
        self.mom, self.decay, self.b1, self.b2, self.eps = momentum, decay, b1, b2, eps
        self.s1, self.s2, self.t = {}, {}, 0

    def update(self, params, grads):
        self.t += 1
        for k in params:
            g = grads[k] + self.wd * params[k]
            p = params[k]
            s1 = self.s1.setdefault(k, np.zeros_like(p))
            s2 = self.s2.setdefault(k, np.zeros_like(p))
            if self.name == "sgd":
                p -= self.lr * g
            elif self.name == "momentum":
                s1[...] = self.mom * s1 - self.lr * g
                p += s1
            elif self.name == "nesterov":
                s1 *= self.mom
                s1 -= self.lr * g
                p += self.mom * self.mom * s1
                p -= (1 + self.mom) * self.lr * g
            elif self.name == "adagrad":
                s1 += g * g
                p -= self.lr * g / (np.sqrt(s1) + self.eps)
            elif self.name == "rmsprop":
                s1[...] = self.decay * s1 + (1 - self.decay) * g * g
                p -= self.lr * g / (np.sqrt(s1) + self.eps)
            elif self.name == "adam":
                lr_t = self.lr * np.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
                s1 += (1 - self.b1) * (g - s1)
                s2 += (1 - self.b2) * (g * g - s2)
                p -= lr_t * s1 / (np.sqrt(s2) + self.eps)
            else:
                raise ValueError(self.name)


def two_layer_gradient(params, x, t):
    """Loss and backprop gradients of Affine-ReLU-Affine-SoftmaxWithLoss (integer labels)."""
    h = affine_forward(x, params["W1"], params["b1"])
    a = np.maximum(h, 0)
    s = affine_forward(a, params["W2"], params["b2"])
    y = softmax(s)
    n = x.shape[0]
    loss = -np.mean(np.log(y[np.arange(n), t]))
    ds = (y - one_hot(t, s.shape[1])) / n
    da, dW2, db2 = affine_backward(a, params["W2"], ds)
    dh = da * (h > 0)
    _, dW1, db1 = affine_backward(x, params["W1"], dh)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


# ---------------------------------------------------------------------- convolution (book 1, chapter 7)
def im2col(x, fh, fw, stride=1, pad=0, sw=None):
    """The textbook's loop: one (FH, FW) slice of the padded image per filter position."""
    sw = stride if sw is None else sw
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // sw + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, fh, fw, oh, ow))
    for y in range(fh):
        for z in range(fw):
            col[:, :, y, z, :, :] = img[:, :, y:y + stride * oh:stride, z:z + sw * ow:sw]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(col, x_shape, fh, fw, stride=1, pad=0, sw=None):
    """The textbook's loop back: overlapping windows add up in the padded image."""
    sw = stride if sw is None else sw
    n, c, h, w = x_shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // sw + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + sw - 1))
    for y in range(fh):
        for z in range(fw):
            img[:, :, y:y + stride * oh:stride, z:z + sw * ow:sw] += col[:, :, y, z, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


def conv_forward(x, W, b, stride=1, pad=0):
    fn, _, fh, fw = W.shape
    n, _, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    out = im2col(x, fh, fw, stride, pad) @ W.reshape(fn, -1).T + b
    return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)


def conv_backward(x, W, dout, stride=1, pad=0):
    """``(dx, dW, db)`` of the textbook's Convolution."""
    fn, c, fh, fw = W.shape
    d = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
    col = im2col(x, fh, fw, stride, pad)
    dW = (col.T @ d).T.reshape(fn, c, fh, fw)
    dx = col2im(d @ W.reshape(fn, -1), x.shape, fh, fw, stride, pad)
    return dx, dW, d.sum(axis=0)


def pool_forward(x, ph, pw, sh, sw, pad=0, mode="max"):
    """Max (first maximum) or mean of each window; ``arg_max`` for the backward."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - ph) // sh + 1, (w + 2 * pad - pw) // sw + 1
    col = im2col(x, ph, pw, sh, pad, sw).reshape(-1, ph * pw)
    out = col.max(axis=1) if mode == "max" else col.mean(axis=1)
    return out.reshape(n, oh, ow, c).transpose(0, 3, 1, 2), np.argmax(col, axis=1)


def pool_backward(x, dout, ph, pw, sh, sw, pad=0, mode="max"):
    """The textbook's ``dmax[arange, arg_max] = dout`` (avg: ``dout / size`` everywhere), then col2im."""
    _, arg_max = pool_forward(x, ph, pw, sh, sw, pad, mode)
    d = dout.transpose(0, 2, 3, 1).reshape(-1)
    size = ph * pw
    if mode == "max":
        dcol = np.zeros((d.size, size))
        dcol[np.arange(d.size), arg_max] = d
    else:
        dcol = np.repeat(d[:, None] / size, size, axis=1)
    return col2im(dcol.reshape(-1, x.shape[1] * size), x.shape, ph, pw, sh, pad, sw)


# ---------------------------------------------------------------------- "Deep Learning from Scratch 2"
def embedding_backward(W_shape, idx, dout):
    """dW of ``W[idx]``: every row of ``dout`` added at its index, one at a time."""
    dW = np.zeros(W_shape)
    idx = np.asarray(idx).reshape(-1)
    d = np.asarray(dout, dtype=np.float64).reshape(idx.size, -1)
    for k, i in enumerate(idx):
        dW[i] += d[k]
    return dW


def embedding_dot(W, h, idx, dout):
    """The book's EmbeddingDot: ``out = sum(W[idx] * h, axis=1)``; returns out, dh, dW."""
    target_W = W[idx]
    out = np.sum(target_W * h, axis=1)
    d = dout.reshape(-1, 1)
    return out, d * target_W, embedding_backward(W.shape, idx, d * h)


def negative_sampling(W, h, target, negatives):
    """The book's NegativeSamplingLoss with the negatives given: one SigmoidWithLoss (batch-mean
    cross-entropy of ``[1 - y, y]``) per column; returns loss, dh, dW."""
    n = h.shape[0]
    loss, dh, dW = 0.0, np.zeros_like(h), np.zeros(W.shape)
    columns = [(target, 1.0)] + [(negatives[:, j], 0.0) for j in range(negatives.shape[1])]
    for idx, label in columns:
        score = np.sum(W[idx] * h, axis=1)
        y = 1 / (1 + np.exp(-score))
        t = np.full(n, label)
        loss += -np.sum(t * np.log(y) + (1 - t) * np.log(1 - y)) / n
        dscore = (y - t) / n
        _, dh_col, dW_col = embedding_dot(W, h, idx, dscore)
        dh += dh_col
        dW += dW_col
    return loss, dh, dW


def time_softmax_with_loss(xs, ts, ignore_label=-1):
    """The book's TimeSoftmaxWithLoss: loss and dx (dout = 1)."""
    N, T, V = xs.shape
    xs, ts = xs.reshape(N * T, V), ts.reshape(N * T)
    mask = ts != ignore_label
    ys = softmax(xs)
    ls = np.log(ys[np.arange(N * T), np.where(mask, ts, 0)])
    loss = -np.sum(ls * mask) / mask.sum()
    dx = ys.copy()
    dx[np.arange(N * T)[mask], ts[mask]] -= 1
    dx = dx / mask.sum() * mask[:, None]
    return loss, dx.reshape(N, T, V)


def time_rnn(xs, Wx, Wh, b, dhs, h0=None):
    """The book's RNN cell over time: hs, and dxs, dWx, dWh, db, dh0 for upstream ``dhs``."""
    N, T, _ = xs.shape
    H = Wh.shape[0]
    h = np.zeros((N, H)) if h0 is None else h0
    caches, hs = [], np.zeros((N, T, H))
    for t in range(T):
        h_next = np.tanh(h @ Wh + xs[:, t] @ Wx + b)
        caches.append((xs[:, t], h, h_next))
        hs[:, t] = h = h_next
    dxs, dWx, dWh, db, dh = np.zeros(xs.shape), np.zeros(Wx.shape), np.zeros(Wh.shape), np.zeros(b.shape), 0
    for t in reversed(range(T)):
        x, h_prev, h_next = caches[t]
        dt = (dhs[:, t] + dh) * (1 - h_next**2)
        db += dt.sum(axis=0)
        dWh += h_prev.T @ dt
        dWx += x.T @ dt
        dh = dt @ Wh.T
        dxs[:, t] = dt @ Wx.T
    return hs, dxs, dWx, dWh, db, dh


def _sig(x):
    return 1 / (1 + np.exp(-x))


def time_lstm(xs, Wx, Wh, b, dhs, h0=None, c0=None):
    """The book's LSTM cell (gates [f | g | i | o]) over time: hs, c_T, then dxs, dWx, dWh, db, dh0."""
    N, T, _ = xs.shape
    H = Wh.shape[0]
    h = np.zeros((N, H)) if h0 is None else h0
    c = np.zeros((N, H)) if c0 is None else c0
    caches, hs = [], np.zeros((N, T, H))
    for t in range(T):
        A = xs[:, t] @ Wx + h @ Wh + b
        f, g, i, o = _sig(A[:, :H]), np.tanh(A[:, H:2 * H]), _sig(A[:, 2 * H:3 * H]), _sig(A[:, 3 * H:])
        c_next = f * c + g * i
        h_next = o * np.tanh(c_next)
        caches.append((xs[:, t], h, c, f, g, i, o, c_next))
        hs[:, t], h, c = h_next, h_next, c_next
    c_last = c
    grads = [np.zeros(xs.shape), np.zeros(Wx.shape), np.zeros(Wh.shape), np.zeros(b.shape)]
    dh, dc = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        x, h_prev, c_prev, f, g, i, o, c_next = caches[t]
        dh_next = dhs[:, t] + dh
        tanh_c = np.tanh(c_next)
        ds = dc + (dh_next * o) * (1 - tanh_c**2)
        dc = ds * f
        di, df, do, dg = ds * g, ds * c_prev, dh_next * tanh_c, ds * i
        di *= i * (1 - i)
        df *= f * (1 - f)
        do *= o * (1 - o)
        dg *= 1 - g**2
        dA = np.hstack((df, dg, di, do))
        grads[2] += h_prev.T @ dA
        grads[1] += x.T @ dA
        grads[3] += dA.sum(axis=0)
        grads[0][:, t] = dA @ Wx.T
        dh = dA @ Wh.T
    return (hs, c_last, *grads, dh)


def time_gru(xs, Wx, Wh, b, dhs, h0=None):
    """The book's GRU (appendix C; Wx, Wh, b split [z | r | h], reset gate before Whh) over
    time: hs, then dxs, dWx, dWh, db, dh0."""
    N, T, _ = xs.shape
    H = Wh.shape[0]
    Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H:2 * H], Wx[:, 2 * H:]
    Whz, Whr, Whh = Wh[:, :H], Wh[:, H:2 * H], Wh[:, 2 * H:]
    bz, br, bh = b[:H], b[H:2 * H], b[2 * H:]
    h = np.zeros((N, H)) if h0 is None else h0
    caches, hs = [], np.zeros((N, T, H))
    for t in range(T):
        x = xs[:, t]
        z = _sig(x @ Wxz + h @ Whz + bz)
        r = _sig(x @ Wxr + h @ Whr + br)
        h_hat = np.tanh(x @ Wxh + (r * h) @ Whh + bh)
        h_next = (1 - z) * h + z * h_hat
        caches.append((x, h, z, r, h_hat))
        hs[:, t] = h = h_next
    dxs, dWx, dWh, db = np.zeros(xs.shape), np.zeros(Wx.shape), np.zeros(Wh.shape), np.zeros(b.shape)
    dh = np.zeros((N, H))
    for t in reversed(range(T)):
        x, h_prev, z, r, h_hat = caches[t]
        dh_next = dhs[:, t] + dh
        dh_hat = dh_next * z
        dh_prev = dh_next * (1 - z)
        dt = dh_hat * (1 - h_hat**2)
        dbh, dWhh, dhr = dt.sum(axis=0), (r * h_prev).T @ dt, dt @ Whh.T
        dWxh, dx = x.T @ dt, dt @ Wxh.T
        dh_prev += r * dhr
        dz = dh_next * h_hat - dh_next * h_prev
        dt = dz * z * (1 - z)
        dbz, dWhz, dWxz = dt.sum(axis=0), h_prev.T @ dt, x.T @ dt
        dh_prev += dt @ Whz.T
        dx += dt @ Wxz.T
        dr = dhr * h_prev
        dt = dr * r * (1 - r)
        dbr, dWhr, dWxr = dt.sum(axis=0), h_prev.T @ dt, x.T @ dt
        dh_prev += dt @ Whr.T
        dx += dt @ Wxr.T
        dWx += np.hstack((dWxz, dWxr, dWxh))
        dWh += np.hstack((dWhz, dWhr, dWhh))
        db += np.hstack((dbz, dbr, dbh))
        dxs[:, t] = dx
        dh = dh_prev
    return hs, dxs, dWx, dWh, db, dh


def attention(hs, h, dout):
    """The book's Attention (AttentionWeight then WeightSum): context c, weights a, dhs, dh."""
    s = np.sum(hs * h[:, None, :], axis=2)
    a = softmax(s)
    c = np.sum(hs * a[:, :, None], axis=1)
    dhs0 = dout[:, None, :] * a[:, :, None]  # WeightSum backward
    da = np.sum(dout[:, None, :] * hs, axis=2)
    ds = a * (da - np.sum(da * a, axis=1, keepdims=True))  # Softmax backward
    dhs1 = ds[:, :, None] * h[:, None, :]
    dh = np.sum(ds[:, :, None] * hs, axis=1)
    return c, a, dhs0 + dhs1, dh


def seq2seq_loss(p, x, t, kind="seq2seq"):
    """The book's Seq2seq / PeekySeq2seq / AttentionSeq2seq loss, teacher forced (decoder input
    ``t[:, :-1]``, target ``t[:, 1:]``), from parameters named as xpnet numbers them: W1 the
    encoder's embedding, Wx1/Wh1/b1 its LSTM, W2 the decoder's embedding, Wx2/Wh2/b2 its LSTM,
    W3/b3 the affine layer."""
    hs = time_lstm(p["W1"][x], p["Wx1"], p["Wh1"], p["b1"], np.zeros((x.shape[0], x.shape[1], p["Wh1"].shape[0])))[0]
    h = hs[:, -1]
    xs, ts = t[:, :-1], t[:, 1:]
    e = p["W2"][xs]
    peek = np.repeat(h[:, None, :], xs.shape[1], axis=1)
    if kind == "peeky-seq2seq":
        e = np.concatenate([peek, e], axis=2)
    dec = time_lstm(e, p["Wx2"], p["Wh2"], p["b2"], np.zeros(peek.shape), h0=h)[0]
    if kind == "peeky-seq2seq":
        dec = np.concatenate([peek, dec], axis=2)
    elif kind == "attention-seq2seq":
        zero = np.zeros(h.shape)
        c = np.stack([attention(hs, dec[:, j], zero)[0] for j in range(dec.shape[1])], axis=1)
        dec = np.concatenate([c, dec], axis=2)
    return time_softmax_with_loss(dec @ p["W3"] + p["b3"], ts)[0]


def lm_loss(p, x, t):
    """The book's BetterRnnlm loss in evaluation (no dropout), from parameters named as xpnet
    numbers them: W1 the table, Wx1/Wh1/b1 and Wx2/Wh2/b2 the LSTMs, b3 the output bias, and
    the output weight W2 when the weights are not tied (else W1 transposed)."""
    zeros = np.zeros((x.shape[0], x.shape[1], p["Wh1"].shape[0]))
    h1 = time_lstm(p["W1"][x], p["Wx1"], p["Wh1"], p["b1"], zeros)[0]
    h2 = time_lstm(h1, p["Wx2"], p["Wh2"], p["b2"], zeros)[0]
    W = p["W2"] if "W2" in p else p["W1"].T
    return time_softmax_with_loss(h2 @ W + p["b3"], t)[0]
