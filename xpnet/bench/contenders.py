"""The CPU contenders: one way each of running the training step (``step(i)`` trains on batch
``i``), all on the same data and initial weights."""

from __future__ import annotations

import time

import numpy as np

from .. import backend as B
from .workloads import LR, init_weights

NOT_AVAILABLE = "not available"


class Unavailable(RuntimeError):
    """A contender that this installation cannot build (a module or library it needs is absent):
    its row reads "not available", with the reason."""


class Contender:
    """One way of running the training step. ``step(i)`` trains on batch ``i``."""

    name = "?"
    kind = "cpu"  # "cpu" (wall clock) or "cuda" (timed with device events)
    lib = "numpy"  # the library whose CUDA events time it ("cupy" or "torch") when kind is "cuda"
    backend = None  # the xpnet backend, for xpnet's own contenders
    warm_whole = False  # True: the warm-up runs the timed number of steps (a new count compiles)

    def step(self, i: int) -> None:
        raise NotImplementedError

    def run(self, start: int, k: int, nb: int) -> float:
        """Seconds for ``k`` steps from batch ``start`` (wall clock, synchronised at the end)."""
        t0 = time.perf_counter()
        for i in range(start, start + k):
            self.step(i % nb)
        self.sync()
        return time.perf_counter() - t0

    def sync(self) -> None:
        pass


class NumpyTextbook(Contender):
    """The step as the textbook writes it in NumPy: fresh arrays everywhere."""

    name = "numpy textbook"

    def __init__(self, w, X, T):
        self.X, self.T, self.B = X, T, w.batch
        self.params = [(W.copy(), b.copy()) for W, b in init_weights(w)]

    def step(self, i):
        x, t = self.X[i * self.B:(i + 1) * self.B], self.T[i * self.B:(i + 1) * self.B]
        acts, masks = [x], []
        for W, b in self.params[:-1]:  # Affine -> Relu
            h = acts[-1] @ W + b
            mask = h <= 0
            h[mask] = 0
            masks.append(mask)
            acts.append(h)
        W, b = self.params[-1]
        s = acts[-1] @ W + b
        s = s - s.max(axis=1, keepdims=True)  # SoftmaxWithLoss
        y = np.exp(s)
        y /= y.sum(axis=1, keepdims=True)
        n = t.shape[0]
        self.loss = -np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n
        dx = y.copy()
        dx[np.arange(n), t] -= 1
        dout = dx / n
        grads = []
        for k in range(len(self.params) - 1, -1, -1):  # Affine.backward, Relu.backward
            W, b = self.params[k]
            grads.append((acts[k].T @ dout, np.sum(dout, axis=0)))
            if k:
                dout = dout @ W.T
                dout[masks[k - 1]] = 0
        for (W, b), (dW, db) in zip(reversed(self.params), grads, strict=True):
            W -= LR * dW
            b -= LR * db


class NumpyBuffers(Contender):
    """The same arithmetic with every buffer allocated once and reused (``out=``)."""

    name = "numpy buffers"

    def __init__(self, w, X, T):
        self.X, self.T, self.B = X, T, w.batch
        self.params = [(W.copy(), b.copy()) for W, b in init_weights(w)]
        f = np.float32
        self.h = [np.empty((w.batch, o), f) for o in w.sizes[1:]]
        self.dh = [np.empty((w.batch, o), f) for o in w.sizes[1:]]
        self.gW = [np.empty_like(W) for W, _ in self.params]
        self.gb = [np.empty_like(b) for _, b in self.params]
        self.m = np.empty((w.batch, 1), f)
        self.rows = np.arange(w.batch)

    def step(self, i):
        B = self.B
        x, t = self.X[i * B:(i + 1) * B], self.T[i * B:(i + 1) * B]
        L = len(self.params)
        a = x
        for k, (W, b) in enumerate(self.params):
            h = self.h[k]
            np.matmul(a, W, out=h)
            h += b
            if k < L - 1:
                np.maximum(h, 0, out=h)
            a = h
        s, m = self.h[-1], self.m  # softmax in place; gradient (y - onehot) / N
        np.max(s, axis=1, keepdims=True, out=m)
        s -= m
        picked = s[self.rows, t]
        np.exp(s, out=s)
        np.sum(s, axis=1, keepdims=True, out=m)
        self.loss = (np.sum(np.log(m)) - np.sum(picked)) / B  # mean cross-entropy, as xpnet gives
        m *= B
        s /= m
        s[self.rows, t] -= 1.0 / B
        dout = s
        for k in range(L - 1, -1, -1):
            a = x if k == 0 else self.h[k - 1]
            np.matmul(a.T, dout, out=self.gW[k])
            np.sum(dout, axis=0, out=self.gb[k])
            if k:
                d = self.dh[k - 1]
                np.matmul(dout, self.params[k][0].T, out=d)
                d *= a > 0
                dout = d
        for (W, b), gW, gb in zip(self.params, self.gW, self.gb, strict=True):
            gW *= LR
            W -= gW
            gb *= LR
            b -= gb


class XPNetOpsInlined(Contender):
    """The very array calls xpnet[numpy] makes in one step, written out flat: no layer
    objects, no dicts, the namespace resolved once. ``t(this) / t(xpnet[numpy])`` is the
    share of xpnet's step spent on the arrays; the rest is xpnet's Python overhead.

    It mirrors ``Affine``/``ReLU`` forward and backward, ``SoftmaxWithLoss`` (log-softmax,
    one-hot by comparison, ``(y - T) / N``), the skipped input gradient of the first layer and
    ``SGD``'s in-place update through a reused buffer; ``tests/test_bench.py`` checks that it
    computes the same weights as xpnet.
    """

    name = "xpnet ops inlined"

    def __init__(self, w, X, T):
        import array_api_compat.numpy as xp

        self.xp, self.X, self.T, self.B = xp, X, T, w.batch
        self.params = [(W.copy(), b.copy()) for W, b in init_weights(w)]
        self.work = [(np.empty_like(W), np.empty_like(b)) for W, b in self.params]
        self.classes = w.sizes[-1]
        self.fmax = float(np.finfo(np.float32).max)

    def step(self, i):
        xp, B = self.xp, self.B
        x, t = self.X[i * B:(i + 1) * B, ...], self.T[i * B:(i + 1) * B, ...]
        L = len(self.params)
        acts, pre = [x], []
        for k, (W, b) in enumerate(self.params):
            h = acts[-1] @ W + b
            if k < L - 1:
                pre.append(h)
                h = xp.maximum(h, xp.zeros((), dtype=h.dtype))
            acts.append(h)
        s = acts[-1]
        m = xp.max(s, axis=-1, keepdims=True)
        h = 0.5 * self.fmax / B
        xs = xp.maximum(s, xp.maximum(m, h - self.fmax) - h)  # log-softmax as xpnet's, overflow-proof
        d = xs - m
        logp = d - xp.log(xp.sum(xp.exp(d), axis=-1, keepdims=True))
        Tm = xp.astype(t[..., None] == xp.arange(self.classes, dtype=t.dtype), s.dtype)
        y = xp.exp(logp)
        self.loss = -xp.sum(logp * Tm) / B
        d = (y - Tm) * (1.0 / B)
        grads = [None] * L
        for k in range(L - 1, -1, -1):
            grads[k] = (acts[k].T @ d, xp.sum(d, axis=0))
            if k:
                d = (d @ self.params[k][0].T) * xp.astype(pre[k - 1] > 0, d.dtype)
        for (W, b), (gW, gb), (wW, wb) in zip(self.params, grads, self.work, strict=True):
            np.multiply(gW, LR, out=wW)
            W -= wW
            np.multiply(gb, LR, out=wb)
            b -= wb


class XPNet(Contender):
    """xpnet's own training step on one backend: ``model.gradient`` then ``SGD.update``.

    Subclasses for other networks override :meth:`layers` (and :meth:`loss`)."""

    def __init__(self, w, X, T, backend: str, device: str | None = None):
        from ..model import Sequential
        from ..optimizers import SGD

        self.be = B.resolve(backend, device, "float32")
        self.backend, self.lib = backend, backend
        self.name = f"xpnet[{backend}]" if device is None else f"xpnet[{backend} {device}]"
        self.kind = "cuda" if backend == "cupy" or (device or "").startswith("cuda") else "cpu"
        self.X, self.T, self.B = self.be.asarray(X), self.be.asarray(T), w.batch
        self.model = Sequential(self.layers(w), self.loss())  # labels validated once; steps pass check=False
        self.opt = SGD(lr=LR)

    def layers(self, w) -> list:
        """The MLP of ``w``: Affine -> ReLU -> ... -> Affine, from the shared initial weights."""
        from ..layers import Affine, ReLU

        out = []
        for k, (W, b) in enumerate(init_weights(w)):
            out.append(Affine(self.be.asarray(W), self.be.asarray(b)))
            if k < len(w.sizes) - 2:
                out.append(ReLU())
        return out

    def loss(self):
        """The loss layer (None: Softmax-with-Loss)."""
        return None

    def step(self, i):
        B = self.B
        x, t = self.X[i * B:(i + 1) * B, ...], self.T[i * B:(i + 1) * B, ...]
        grads = self.model.gradient(x, t, check=False)
        self.opt.update(self.model.params, grads)

    def sync(self):
        _sync_array(self.model.reference_array)


class XPNetCompiled(Contender):
    """xpnet's step compiled by the backend (:func:`xpnet.compile_step`; jax: ``jax.jit``).

    ``epoch=False``: one compiled call per step. ``epoch=True``: the timed steps as one
    compiled call (``lax.scan``) over the batches stacked on the device. Batches are picked by
    a device index, so no step compiles a new slice."""

    eager = XPNet  # the eager contender whose model and optimizer are compiled

    def __init__(self, w, X, T, backend: str = "jax", epoch: bool = False, device: str | None = None):
        from ..compile import GraphStep, compile_step

        base = self.eager(w, X, T, backend, device)
        self.be, self.model, self.B = base.be, base.model, w.batch
        self.backend = f"{backend} compiled"  # timed over every step, not sampled as eager jax
        self.lib, self.kind = backend, base.kind
        self.epoch = self.warm_whole = epoch
        self.X, self.T = base.X, base.T  # the data on the device
        self.compiled = compile_step(self.model, base.opt, warn=False)
        if not self.compiled.compiled:
            raise RuntimeError(self.compiled.reason)
        how = "CUDA graph" if isinstance(self.compiled, GraphStep) else "compiled"
        self.name = f"{base.name} {how} " + ("epoch" if epoch else "step")
        xp, nb = self.be.xp, w.steps_per_epoch
        self.Xs = xp.reshape(base.X[: nb * self.B, ...], (nb, self.B, *base.X.shape[1:]))
        self.Ts = xp.reshape(base.T[: nb * self.B, ...], (nb, self.B, *base.T.shape[1:]))
        # the batches split once on the host and uploaded, outside the timing (no device slice
        # per batch, and no 600-output unstack for XLA to compile)
        self.batches = [] if epoch else [
            (self.be.asarray(X[i * self.B:(i + 1) * self.B]), self.be.asarray(T[i * self.B:(i + 1) * self.B]))
            for i in range(nb)]
        self._chunks: dict = {}
        self.last = None

    def step(self, i):
        self.last = self.compiled(*self.batches[i])

    def run(self, start: int, k: int, nb: int) -> float:
        if not self.epoch:
            return super().run(start, k, nb)
        if k not in self._chunks:  # the first k batches (the data are synthetic: any k do)
            self._chunks[k] = (self.Xs[:k, ...], self.Ts[:k, ...])
        xs, ts = self._chunks[k]
        t0 = time.perf_counter()
        self.last = self.compiled.run(xs, ts)
        self.sync()
        return time.perf_counter() - t0

    def sync(self):
        _sync_step(self.last, self.model)


class TorchNative(Contender):
    """PyTorch as its users write it: nn.Linear, F.cross_entropy, optim.SGD, autograd."""

    def __init__(self, w, X, T, device: str = "cpu"):
        import torch

        self.torch = torch
        self.lib = "torch"
        self.name = "torch native" if device == "cpu" else "torch native CUDA"
        self.kind = "cpu" if device == "cpu" else "cuda"
        mods = []
        for k, (W, b) in enumerate(init_weights(w)):
            lin = torch.nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
            if k < len(w.sizes) - 2:
                mods.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*mods).to(device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.X = torch.from_numpy(X).to(device)
        self.T = torch.from_numpy(T).to(device)
        self.B = w.batch
        self.device = device

    def step(self, i):
        B, F = self.B, self.torch.nn.functional
        x, t = self.X[i * B:(i + 1) * B], self.T[i * B:(i + 1) * B]
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.net(x), t)
        loss.backward()
        self.opt.step()

    def sync(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()


def _sync_step(last, model) -> None:
    """Wait for the last step's loss (if any) and the model's first weights: the work is done."""
    if last is not None:
        _sync_array(last)
    _sync_array(model.reference_array)


def _sync_array(x) -> None:
    """Wait for the device that holds ``x`` (no-op on the CPU backends)."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif mod.startswith("torch") and x.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    elif mod.startswith("jax"):
        x.block_until_ready()


