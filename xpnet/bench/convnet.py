"""W4's contenders: the first book's SimpleConvNet step (conv 30 filters 5x5, ReLU, 2x2
max-pooling, Affine 4320 -> 100, ReLU, Affine 100 -> 10, Softmax-with-Loss, SGD) on 1x28x28
images, batch 100, float32.

* ``numpy textbook``: the book's way in NumPy, written here: ``im2col`` as a loop over the
  filter's positions, ``col2im`` the same loop adding back, max-pooling through ``im2col`` and
  ``argmax``, every layer's input gradient (the first convolution's too, as the book's
  ``gradient`` does), ``p -= lr * g``. Its buffers are float32 (the book's ``np.zeros`` default
  would make them float64).
* ``torch native``: ``nn.Conv2d``, ``max_pool2d``, ``nn.Linear``, ``F.cross_entropy``,
  ``optim.SGD``, one thread.
* ``xpnet[<backend>]`` (eager) and ``xpnet[jax] compiled epoch``: xpnet's ``Convolution`` and
  ``Pooling`` (:mod:`xpnet.conv`) in a ``Sequential``; where that module is absent the rows are
  left out with the reason.

All start from the same weights (:func:`init_conv_weights`) and see the same batches.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .contenders import Contender, Unavailable, XPNet, XPNetCompiled
from .workloads import CONV_C, CONV_FN, CONV_K, LR, POOL

CONV_MISSING = "this installation has no xpnet.conv (Convolution, Pooling)"


def init_conv_weights(w, seed: int = 1, std: float = 0.01):
    """float32 weights N(0, std^2) (the book's ``weight_init_std=0.01``), zero biases: the
    convolution's ``(FN, C, K, K)``, then the two Affines' ``(in, out)``."""
    rng = np.random.default_rng(seed)
    shapes = [(CONV_FN, CONV_C, CONV_K, CONV_K)] + list(zip(w.sizes[1:-1], w.sizes[2:], strict=True))
    return [((rng.standard_normal(s) * std).astype(np.float32), np.zeros(s[0] if len(s) == 4 else s[1], np.float32))
            for s in shapes]


# ------------------------------------------------------------------ the book's way, in NumPy
def im2col(x, fh, fw, stride=1, pad=0):
    """(N, C, H, W) -> (N*OH*OW, C*fh*fw): one strided copy per filter position."""
    N, C, H, W = x.shape
    oh, ow = (H + 2 * pad - fh) // stride + 1, (W + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)]) if pad else x
    col = np.zeros((N, C, fh, fw, oh, ow), dtype=x.dtype)
    for y in range(fh):
        for xx in range(fw):
            col[:, :, y, xx, :, :] = img[:, :, y:y + stride * oh:stride, xx:xx + stride * ow:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * oh * ow, -1)


def col2im(col, shape, fh, fw, stride=1, pad=0):
    """The adjoint of :func:`im2col`: each filter position's slice added back into the image."""
    N, C, H, W = shape
    oh, ow = (H + 2 * pad - fh) // stride + 1, (W + 2 * pad - fw) // stride + 1
    col = col.reshape(N, oh, ow, C, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=col.dtype)
    for y in range(fh):
        for xx in range(fw):
            img[:, :, y:y + stride * oh:stride, xx:xx + stride * ow:stride] += col[:, :, y, xx, :, :]
    return img[:, :, pad:H + pad, pad:W + pad]


class NumpyConvTextbook(Contender):
    """W4's step as the book writes it in NumPy (see the module's docstring)."""

    name = "numpy textbook"

    def __init__(self, w, X, T):
        self.X, self.T, self.B = X, T, w.batch
        self.params = [a.copy() for Wb in init_conv_weights(w) for a in Wb]

    def step(self, i):
        B = self.B
        x, t = self.X[i * B:(i + 1) * B], self.T[i * B:(i + 1) * B]
        y, cache = self._forward(x)
        N = x.shape[0]
        self.loss = -np.sum(np.log(y[np.arange(N), t] + 1e-7)) / N  # SoftmaxWithLoss
        dx = y.copy()
        dx[np.arange(N), t] -= 1
        grads = self._backward(dx / N, x, *cache)
        for param, g in zip(self.params, grads, strict=True):
            param -= LR * g

    def _forward(self, x):
        Wc, bc, W1, b1, W2, b2 = self.params
        N, FN = x.shape[0], Wc.shape[0]
        # Convolution
        col = im2col(x, CONV_K, CONV_K)
        col_W = Wc.reshape(FN, -1).T
        oh = x.shape[2] - CONV_K + 1
        c = (col @ col_W + bc).reshape(N, oh, oh, -1).transpose(0, 3, 1, 2)
        # Relu
        mask1 = c <= 0
        r = c.copy()
        r[mask1] = 0
        # Pooling (max, 2x2, stride 2)
        ph = oh // POOL
        pcol = im2col(r, POOL, POOL, POOL).reshape(-1, POOL * POOL)
        arg_max = np.argmax(pcol, axis=1)
        p = np.max(pcol, axis=1).reshape(N, ph, ph, FN).transpose(0, 3, 1, 2)
        # Affine, Relu, Affine
        a_in = p.reshape(N, -1)
        h = a_in @ W1 + b1
        mask2 = h <= 0
        h[mask2] = 0
        s = h @ W2 + b2
        # softmax
        s = s - s.max(axis=1, keepdims=True)
        y = np.exp(s)
        y /= y.sum(axis=1, keepdims=True)
        return y, (col, col_W, mask1, r.shape, arg_max, p.shape, a_in, h, mask2)

    def _backward(self, dout, x, col, col_W, mask1, r_shape, arg_max, p_shape, a_in, h, mask2):
        Wc, _, W1, _, W2, _ = self.params
        FN = Wc.shape[0]
        dW2, db2 = h.T @ dout, np.sum(dout, axis=0)
        dout = dout @ W2.T
        dout[mask2] = 0
        dW1, db1 = a_in.T @ dout, np.sum(dout, axis=0)
        dout = (dout @ W1.T).reshape(p_shape)
        dout = dout.transpose(0, 2, 3, 1)  # Pooling.backward
        dmax = np.zeros((dout.size, POOL * POOL), dtype=dout.dtype)
        dmax[np.arange(arg_max.size), arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape(dout.shape + (POOL * POOL,))
        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        dout = col2im(dcol, r_shape, POOL, POOL, POOL)
        dout[mask1] = 0  # Relu.backward
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)  # Convolution.backward
        dbc = np.sum(dout, axis=0)
        dWc = (col.T @ dout).transpose(1, 0).reshape(Wc.shape)
        self.dx = col2im(dout @ col_W.T, x.shape, CONV_K, CONV_K)  # the book computes it for the first layer too
        return dWc, dbc, dW1, db1, dW2, db2


class TorchConv(Contender):
    """W4 in PyTorch as its users write it: nn.Conv2d, max_pool2d, nn.Linear, cross_entropy, SGD."""

    name = "torch native"
    lib = "torch"

    def __init__(self, w, X, T):
        import torch

        self.torch, self.B = torch, w.batch
        (Wc, bc), (W1, b1), (W2, b2) = init_conv_weights(w)
        self.conv = torch.nn.Conv2d(CONV_C, CONV_FN, CONV_K)
        self.fc1 = torch.nn.Linear(*W1.shape)
        self.fc2 = torch.nn.Linear(*W2.shape)
        with torch.no_grad():
            for mod, W, b in ((self.conv, Wc, bc), (self.fc1, W1.T, b1), (self.fc2, W2.T, b2)):
                mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
                mod.bias.copy_(torch.from_numpy(b))
        params = [p for m in (self.conv, self.fc1, self.fc2) for p in m.parameters()]
        self.opt = torch.optim.SGD(params, lr=LR)
        self.X, self.T = torch.from_numpy(X), torch.from_numpy(T)

    def step(self, i):
        F, B = self.torch.nn.functional, self.B
        x, t = self.X[i * B:(i + 1) * B], self.T[i * B:(i + 1) * B]
        self.opt.zero_grad(set_to_none=True)
        h = F.max_pool2d(F.relu(self.conv(x)), POOL, POOL)
        s = self.fc2(F.relu(self.fc1(h.flatten(1))))
        loss = F.cross_entropy(s, t)
        loss.backward()
        self.opt.step()
        self.loss = loss.detach()


# ------------------------------------------------------------------ xpnet's layers
def conv_module():
    """:mod:`xpnet.conv`, or None where this installation has none."""
    if importlib.util.find_spec("xpnet.conv") is None:
        return None
    import xpnet.conv

    return xpnet.conv


class XPNetConv(XPNet):
    """W4 with xpnet's layers: Convolution, ReLU, Pooling (max), Flatten, Affine, ReLU, Affine."""

    def layers(self, w) -> list:
        conv = conv_module()
        if conv is None:
            raise Unavailable(CONV_MISSING)
        from ..layers import Affine, ReLU

        (Wc, bc), (W1, b1), (W2, b2) = ((self.be.asarray(W), self.be.asarray(b)) for W, b in init_conv_weights(w))
        return [conv.Convolution(Wc, bc, 1, 0), ReLU(), conv.Pooling(POOL, POOL, POOL, 0, "max"), conv.Flatten(),
                Affine(W1, b1), ReLU(), Affine(W2, b2)]  # the layers of xpnet.simple_cnn


class XPNetConvCompiled(XPNetCompiled):
    """W4 with xpnet's layers through :func:`xpnet.compile_step` (jax: one scanned epoch)."""

    eager = XPNetConv


# W4's contenders: the hand-written baselines, xpnet's eager rows, xpnet's compiled row
CONTENDERS = (NumpyConvTextbook, TorchConv, XPNetConv, ("xpnet[jax] compiled epoch", XPNetConvCompiled, True))
