"""Contenders that train as a user's loop does: a fresh shuffle each epoch, drawn on the host and
uploaded once, each batch gathered from it (the README's loop), against the same loop
hand-written in NumPy; and the trainer's compiled epoch (``step.epoch``), which gathers the
batches inside one compiled call.

The other contenders slice pre-shuffled data (no gather), so they time the step alone; these
time what a user's epoch costs. Also here: the step written directly in jax, compiled per step
and as one scanned epoch, the reference for what XLA makes of the step on this CPU.
"""

from __future__ import annotations

import time

import numpy as np

from .contenders import Contender, NumpyTextbook, XPNet, XPNetCompiled, _sync_step


class _Shuffled(Contender):
    """``run`` draws a permutation of the rows each call (the README's ``rng.permutation(n)``),
    then trains on ``k`` batches of it from batch ``start``."""

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.order = None

    def run(self, start: int, k: int, nb: int) -> float:
        t0 = time.perf_counter()
        self.shuffle()
        for i in range(start, start + k):
            self.step(i % nb)
        self.sync()
        return time.perf_counter() - t0

    def shuffle(self):
        self.order = self.rng.permutation(self.n)


class NumpyTextbookLoop(_Shuffled):
    """The textbook's NumPy step on ``X[idx]``, ``T[idx]`` for each batch of a fresh shuffle."""

    name = "numpy textbook, README loop"

    def __init__(self, w, X, T):
        super().__init__()
        self.inner = NumpyTextbook(w, X, T)
        self.X, self.T, self.B, self.n = X, T, w.batch, X.shape[0]

    def step(self, i):
        idx = self.order[i * self.B:(i + 1) * self.B]
        inner = self.inner
        inner.X, inner.T = self.X[idx], self.T[idx]
        inner.step(0)


class XPNetLoop(_Shuffled):
    """xpnet in the README's loop: ``order = be.asarray(rng.permutation(n))`` once an epoch,
    then ``xp.take`` of each batch, ``model.gradient(..., check=False)``, ``opt.update``; or,
    ``compiled=True``, the compiled step called on the gathered batch."""

    def __init__(self, w, X, T, backend: str = "numpy", compiled: bool = False):
        super().__init__()
        base = XPNet(w, X, T, backend)
        self.be, self.model, self.opt, self.B = base.be, base.model, base.opt, w.batch
        self.X, self.T, self.n = base.X, base.T, X.shape[0]
        self.backend = f"{backend} compiled" if compiled else backend
        self.compiled = None
        if compiled:
            from ..compile import compile_step

            self.compiled = compile_step(self.model, self.opt, warn=False)
            if not self.compiled.compiled:
                raise RuntimeError(self.compiled.reason)
        self.name = f"{base.name} {'compiled step, ' if compiled else ''}README loop"
        self.last = None

    def shuffle(self):
        self.order = self.be.asarray(self.rng.permutation(self.n))

    def step(self, i):
        xp, B = self.be.xp, self.B
        idx = self.order[i * B:(i + 1) * B]
        xb, tb = xp.take(self.X, idx, axis=0), xp.take(self.T, idx, axis=0)
        if self.compiled is not None:
            self.last = self.compiled(xb, tb)
        else:
            self.opt.update(self.model.params, self.model.gradient(xb, tb, check=False))

    def sync(self):
        _sync_step(self.last, self.model)


class XPNetEpoch(Contender):
    """The trainer's compiled epoch: ``step.epoch(x, t, rng.permutation(n), batch)``, the
    batches gathered on the device inside one compiled call."""

    warm_whole = True  # a new number of steps compiles: warm up with the timed one

    def __init__(self, w, X, T, backend: str = "jax"):
        base = XPNetCompiled(w, X, T, backend, epoch=True)
        self.model, self.compiled, self.B = base.model, base.compiled, w.batch
        self.X, self.T = base.X, base.T
        self.backend, self.lib, self.kind = base.backend, base.lib, base.kind
        self.name = f"xpnet[{backend}] step.epoch"
        self.rng = np.random.default_rng(0)
        self._data: dict = {}
        self.last = None

    def run(self, start: int, k: int, nb: int) -> float:
        if k not in self._data:  # the first k batches' rows (the data are synthetic: any do)
            self._data[k] = (self.X[: k * self.B, ...], self.T[: k * self.B, ...])
        x, t = self._data[k]
        t0 = time.perf_counter()
        self.last = self.compiled.epoch(x, t, self.rng.permutation(k * self.B), self.B)[0]
        self.sync()
        return time.perf_counter() - t0

    def sync(self):
        _sync_step(self.last, self.model)


def loop_contenders(w, X, T, backends, errors: dict) -> list[Contender]:
    """The README-loop contenders that can be built for these backends (numpy always)."""
    makers = [("numpy textbook, README loop", lambda: NumpyTextbookLoop(w, X, T))]
    if "numpy" in backends:
        makers.append(("xpnet[numpy] README loop", lambda: XPNetLoop(w, X, T, "numpy")))
    if "jax" in backends:
        makers.append(("xpnet[jax] compiled step, README loop", lambda: XPNetLoop(w, X, T, "jax", True)))
        makers.append(("xpnet[jax] step.epoch", lambda: XPNetEpoch(w, X, T, "jax")))
        makers.append(("jax hand-written compiled step", lambda: JaxNative(w, X, T)))
        makers.append(("jax hand-written compiled epoch", lambda: JaxNative(w, X, T, epoch=True)))
    out = []
    for name, make in makers:
        try:
            out.append(make())
        except Exception as e:
            errors[f"{w.name} {name}"] = f"{type(e).__name__}: {e}"
    return out


class JaxNative(Contender):
    """The same MLP step written directly in jax (``jax.grad`` of a softmax cross-entropy, SGD),
    ``jax.jit`` per step or one ``lax.scan`` over the timed steps on pre-stacked batches, as
    ``xpnet[jax] compiled step / epoch`` run: what XLA itself makes of the step on this CPU."""

    backend = "jax compiled"
    lib = "jax"

    def __init__(self, w, X, T, epoch: bool = False):
        import jax
        import jax.numpy as jnp

        from .workloads import LR, init_weights

        self.jax, self.B, self.epoch = jax, w.batch, epoch
        self.warm_whole = epoch
        self.name = f"jax hand-written compiled {'epoch' if epoch else 'step'}"
        self.params = [jnp.asarray(a) for Wb in init_weights(w) for a in Wb]
        nb = w.steps_per_epoch
        self.Xs = jnp.reshape(jnp.asarray(X[: nb * w.batch]), (nb, w.batch, X.shape[1]))
        self.Ts = jnp.reshape(jnp.asarray(T[: nb * w.batch].astype(np.int32)), (nb, w.batch))
        B = w.batch
        self.batches = [] if epoch else [(jnp.asarray(X[i * B:(i + 1) * B]),
                                          jnp.asarray(T[i * B:(i + 1) * B].astype(np.int32))) for i in range(nb)]

        def loss(p, x, t):
            h = x
            for k in range(0, len(p) - 2, 2):
                h = jnp.maximum(h @ p[k] + p[k + 1], 0)
            s = h @ p[-2] + p[-1]
            return jnp.mean(jax.nn.logsumexp(s, axis=1) - jnp.take_along_axis(s, t[:, None], 1)[:, 0])

        def step(p, x, t):
            v, g = jax.value_and_grad(loss)(p, x, t)
            return [a - LR * b for a, b in zip(p, g, strict=True)], v

        self.step_fn = jax.jit(step, donate_argnums=(0,))
        self.scan_fn = jax.jit(lambda p, xs, ts: jax.lax.scan(lambda c, b: step(c, *b), p, (xs, ts)),
                               donate_argnums=(0,))
        self.last = None

    def step(self, i):
        self.params, self.last = self.step_fn(self.params, *self.batches[i])

    def run(self, start: int, k: int, nb: int) -> float:
        if not self.epoch:
            return super().run(start, k, nb)
        xs, ts = self.Xs[:k], self.Ts[:k]
        t0 = time.perf_counter()
        self.params, self.last = self.scan_fn(self.params, xs, ts)
        self.sync()
        return time.perf_counter() - t0

    def sync(self):
        self.jax.block_until_ready(self.params)
