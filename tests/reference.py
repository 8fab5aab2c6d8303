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
