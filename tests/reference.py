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


# ---------------------------------------------------------------------- "Deep Learning from Scratch 2"
def embedding_backward(W_shape, idx, dout):
    """dW of ``W[idx]``: every row of ``dout`` added at its index, one at a time."""
    dW = np.zeros(W_shape)
    idx = np.asarray(idx).reshape(-1)
    d = np.asarray(dout, dtype=np.float64).reshape(idx.size, -1)
    for k, i in enumerate(idx):
        dW[i] += d[k]
    return dW


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
