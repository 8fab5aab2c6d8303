"""``xpnet bench``: the training step of xpnet against hand-written NumPy, PyTorch and the floor.

Three workloads, float32, synthetic seeded data, SGD with lr 0.1:

* **W1** MNIST-shaped: 60,000 x 784 inputs, 10 classes, MLP 784-100-10 (ReLU), batch 100, one epoch;
* **W2** GEMM-bound: 784-1024-1024-10, batch 1,000 (a sample of the epoch's steps, scaled up);
* **W3** latency-bound: 64-100-10 on the digits shape (1,797 x 64), batch 32, one epoch.

Contenders, all timed in the same process, interleaved (A B C A B C ...) after a warm-up;
the table gives the median of the repeats:

* ``xpnet[<backend>]`` for each installed backend (``model.gradient`` + ``SGD.update``);
* ``numpy textbook``: the step hand-written in NumPy the way the textbook writes it (fresh
  arrays every step, ``dx[arange(N), t] -= 1``, ``p -= lr * g``): the baseline of the ratios;
* ``numpy buffers``: the same arithmetic hand-written with every buffer reused (``out=``),
  the fewest NumPy calls we know for the step: the reference for xpnet's Python overhead;
* ``xpnet[jax] compiled step`` / ``compiled epoch``: the same step through
  :func:`xpnet.compile_step` (``jax.jit`` per step; one ``lax.scan`` over the timed steps);
* ``torch native``: ``nn.Linear``, ``F.cross_entropy``, ``optim.SGD``, autograd;
* on a GPU: ``xpnet[cupy]`` and ``xpnet[torch cuda:0]``, eager and ``CUDA graph step`` (the
  step captured once and replayed, :class:`xpnet.compile.GraphStep`), and ``torch native CUDA``;
* the floor: the step's matmul FLOPs divided by the machine's measured large-matmul rate.

Every contender sees the same data: shuffled once, then contiguous slices of ``batch`` rows
(no per-step gather), so the timings compare the training step and nothing else.

Run ``python -m xpnet.bench --help``. ``--quick`` runs in a few seconds (small data, few steps).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from . import backend as B
from .cli import _positive_int  # the same flag type as the xpnet command's

LR = 0.1


# ---------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    sizes: tuple[int, ...]
    n: int  # rows of the dataset (one epoch = n // batch steps)
    batch: int
    steps: int | None = None  # steps timed per repeat (None: the whole epoch)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch

    @property
    def timed_steps(self) -> int:
        return min(self.steps or self.steps_per_epoch, self.steps_per_epoch)

    def flops(self) -> float:
        """Matmul FLOPs of one step: forward, weight gradients, and input gradients of every
        layer but the first (the data need none)."""
        pairs = list(zip(self.sizes[:-1], self.sizes[1:], strict=True))
        per_row = sum(3 * 2 * i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1]
        return float(per_row * self.batch)

    def dataset_bytes(self) -> int:
        return self.n * self.sizes[0] * 4 + self.n * 8


WORKLOADS = {
    "W1": Workload("W1", "MNIST-shaped 784-100-10, batch 100", (784, 100, 10), 60_000, 100),
    "W2": Workload("W2", "GEMM-bound 784-1024-1024-10, batch 1000", (784, 1024, 1024, 10), 60_000, 1000, 12),
    "W3": Workload("W3", "latency-bound 64-100-10 (digits shape), batch 32", (64, 100, 10), 1_797, 32),
}


def quick_workload(w: Workload) -> Workload:
    """A few-second version: fewer rows and steps, same shapes."""
    n = min(w.n, w.batch * (2 if w.name == "W2" else 20))
    return Workload(w.name, w.title, w.sizes, n, w.batch, 1 if w.name == "W2" else None)


def make_data(w: Workload, seed: int = 0):
    """Synthetic float32 inputs in [0, 1) and int64 labels, seeded."""
    rng = np.random.default_rng(seed)
    X = rng.random((w.n, w.sizes[0]), dtype=np.float32)
    T = rng.integers(0, w.sizes[-1], size=w.n).astype(np.int64)
    return X, T


def init_weights(w: Workload, seed: int = 1):
    """He-initialised float32 weights and zero biases, the same for every contender."""
    rng = np.random.default_rng(seed)
    out = []
    for i, o in zip(w.sizes[:-1], w.sizes[1:], strict=True):
        W = (rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(np.float32)
        out.append((W, np.zeros(o, dtype=np.float32)))
    return out


# ---------------------------------------------------------------------------- contenders
class Contender:
    """One way of running the training step. ``step(i)`` trains on batch ``i``."""

    name = "?"
    kind = "cpu"  # "cpu" (wall clock) or "cuda" (timed with device events)
    lib = "numpy"  # the library whose CUDA events time it ("cupy" or "torch") when kind is "cuda"
    backend = None  # the xpnet backend, for xpnet's own contenders

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
    """xpnet's own training step on one backend: ``model.gradient`` then ``SGD.update``."""

    def __init__(self, w, X, T, backend: str, device: str | None = None):
        from .layers import Affine
        from .model import Sequential
        from .optimizers import SGD

        self.be = B.resolve(backend, device, "float32")
        self.backend, self.lib = backend, backend
        self.name = f"xpnet[{backend}]" if device is None else f"xpnet[{backend} {device}]"
        self.kind = "cuda" if backend == "cupy" or (device or "").startswith("cuda") else "cpu"
        self.X, self.T, self.B = self.be.asarray(X), self.be.asarray(T), w.batch
        layers = []
        for k, (W, b) in enumerate(init_weights(w)):
            layers.append(Affine(self.be.asarray(W), self.be.asarray(b)))
            if k < len(w.sizes) - 2:
                from .layers import ReLU

                layers.append(ReLU())
        self.model = Sequential(layers)  # labels validated once; each step passes check=False
        self.opt = SGD(lr=LR)

    def step(self, i):
        B = self.B
        x, t = self.X[i * B:(i + 1) * B, ...], self.T[i * B:(i + 1) * B, ...]
        grads = self.model.gradient(x, t, check=False)
        self.opt.update(self.model.params, grads)

    def sync(self):
        _sync_array(self.model.params["W1"])


class XPNetCompiled(Contender):
    """xpnet's step compiled by the backend (:func:`xpnet.compile_step`; jax: ``jax.jit``).

    ``epoch=False``: one compiled call per step. ``epoch=True``: the timed steps as one
    compiled call (``lax.scan``) over the batches stacked on the device. Batches are picked by
    a device index, so no step compiles a new slice."""

    def __init__(self, w, X, T, backend: str = "jax", epoch: bool = False, device: str | None = None):
        from .compile import GraphStep, compile_step

        base = XPNet(w, X, T, backend, device)
        self.be, self.model, self.B = base.be, base.model, w.batch
        self.backend = f"{backend} compiled"  # timed over every step, not sampled as eager jax
        self.lib, self.kind = backend, base.kind
        self.epoch = epoch
        self.compiled = compile_step(self.model, base.opt, warn=False)
        if not self.compiled.compiled:
            raise RuntimeError(self.compiled.reason)
        how = "CUDA graph" if isinstance(self.compiled, GraphStep) else "compiled"
        self.name = f"{base.name} {how} " + ("epoch" if epoch else "step")
        xp, nb = self.be.xp, w.steps_per_epoch
        self.Xs = xp.reshape(base.X[: nb * self.B, ...], (nb, self.B, *base.X.shape[1:]))
        self.Ts = xp.reshape(base.T[: nb * self.B, ...], (nb, self.B))
        # the batches split once, outside the timing (one device call, not one slice per batch)
        self.batches = list(zip(xp.unstack(self.Xs), xp.unstack(self.Ts))) if not epoch else []
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
        if self.last is not None:
            _sync_array(self.last)
        _sync_array(self.model.params["W1"])


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


# ---------------------------------------------------------------------------- GPU timing
class CudaTimer:
    """Time ``k`` steps with CUDA events recorded on the current stream (no host sync inside)."""

    def __init__(self, lib: str):
        self.lib = lib

    def run(self, c: Contender, start: int, k: int, nb: int) -> float:
        if self.lib == "cupy":
            import cupy

            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            for i in range(start, start + k):
                c.step(i % nb)
            e1.record()
            e1.synchronize()
            return cupy.cuda.get_elapsed_time(e0, e1) / 1e3
        import torch

        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for i in range(start, start + k):
            c.step(i % nb)
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1) / 1e3


def gpu_unavailable_reason() -> str | None:
    """None when CuPy can run on a CUDA device here; otherwise why not."""
    if not B.installed("cupy"):
        return "cupy is not installed"
    try:
        B.resolve("cupy")
    except B.BackendError as e:
        return str(e)
    return None


def torch_cuda_available() -> bool:
    if not B.installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------- machine
def matmul_rate(quick: bool = False) -> dict:
    """Best large-matmul rate (FLOP/s) of NumPy and, when installed, torch, float32."""
    n = 1024 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    out = {}

    def best(fn, reps):
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 2.0 * n**3 / min(times)

    reps = 3 if quick else 7
    out["numpy"] = best(lambda: np.matmul(a, b, out=c), reps)
    if importlib.util.find_spec("torch") is not None:
        import torch

        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        out["torch"] = best(lambda: torch.matmul(ta, tb, out=tc), reps)
    out["best"] = max(out.values())
    out["n"] = n
    return out


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}
    for mod in ("torch", "jax", "dask", "array_api_strict", "cupy"):
        if importlib.util.find_spec(mod) is not None:
            try:
                info[mod] = __import__(mod).__version__
            except Exception as e:  # a broken install must not stop the benchmark
                info[mod] = f"unusable ({type(e).__name__})"
    return info


def set_threads(n: int) -> dict:
    """Use ``n`` threads in every library that is loaded (torch; BLAS via the environment)."""
    got = {"requested": n, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)
        got["torch"] = torch.get_num_threads()
    return got


# ---------------------------------------------------------------------------- measuring
def gpu_makers(cupy: bool, torch_cuda: bool) -> dict:
    """The GPU contenders that can be built here, by name: xpnet on CuPy and on torch CUDA, each
    eager and as a CUDA graph (:class:`xpnet.compile.GraphStep`), and torch native CUDA."""
    makers = {}
    if cupy:
        makers["xpnet[cupy]"] = lambda w, X, T: XPNet(w, X, T, "cupy")
        makers["xpnet[cupy] CUDA graph step"] = lambda w, X, T: XPNetCompiled(w, X, T, "cupy")
    if torch_cuda:
        makers["xpnet[torch cuda:0]"] = lambda w, X, T: XPNet(w, X, T, "torch", "cuda:0")
        makers["xpnet[torch cuda:0] CUDA graph step"] = lambda w, X, T: XPNetCompiled(w, X, T, "torch",
                                                                                      device="cuda:0")
        makers["torch native CUDA"] = lambda w, X, T: TorchNative(w, X, T, "cuda")
    return makers


def contenders_for(w: Workload, X, T, backends, gpu, errors: dict) -> list[Contender]:
    """The contenders of workload ``w``; ``gpu``: a dict of GPU makers (:func:`gpu_makers`),
    or a false value for the CPU table. A contender that cannot be built is left out and its
    error kept in ``errors`` under ``"<workload> <contender>"``."""
    if gpu:
        out = []
        for name, make in gpu.items():
            try:
                out.append(make(w, X, T))
            except Exception as e:
                errors[f"{w.name} {name}"] = f"{type(e).__name__}: {e}"
        return out
    out: list[Contender] = [NumpyTextbook(w, X, T), NumpyBuffers(w, X, T)]
    if "numpy" in backends:
        out.append(XPNetOpsInlined(w, X, T))
    for name in backends:
        try:
            out.append(XPNet(w, X, T, name))
        except Exception as e:
            errors[f"{w.name} xpnet[{name}]"] = f"{type(e).__name__}: {e}"
    if "jax" in backends:
        for epoch in (False, True):
            try:
                out.append(XPNetCompiled(w, X, T, "jax", epoch=epoch))
            except Exception as e:
                errors[f"{w.name} xpnet[jax] compiled {'epoch' if epoch else 'step'}"] = f"{type(e).__name__}: {e}"
    if importlib.util.find_spec("torch") is not None:
        out.append(TorchNative(w, X, T))
    return out


# backends that are for correctness, not speed: a few steps are timed and scaled to the epoch
SLOW_BACKENDS = {"dask": 8, "array_api_strict": 60, "jax": 60}


def measure(w: Workload, contenders: list[Contender], repeats: int, warmup: int = 3,
            errors: dict | None = None) -> dict:
    """Interleaved timing: for each repeat, every contender runs the timed steps in turn.

    A contender whose step fails (a GPU kernel that cannot load, out of memory...) is
    dropped with its error kept in ``errors`` under ``"<workload> <contender>"``; the others
    go on.
    """
    nb = w.steps_per_epoch
    errors = {} if errors is None else errors
    k_of = {c.name: min(w.timed_steps, SLOW_BACKENDS.get(c.backend, w.timed_steps)) for c in contenders}
    timers = {c.name: (CudaTimer(c.lib).run if c.kind == "cuda" else (lambda c, s, k, nb: c.run(s, k, nb)))
              for c in contenders}
    alive = list(contenders)

    def timed(c, start, k):
        try:
            return timers[c.name](c, start, k, nb)
        except Exception as e:
            errors[f"{w.name} {c.name}"] = f"{type(e).__name__}: {e}"
            alive.remove(c)
            return None

    for c in list(alive):  # warm-up: caches, lazy imports, kernels
        timed(c, 0, min(warmup, nb))
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for c in list(alive if r % 2 == 0 else alive[::-1]):
                k = k_of[c.name]
                t = timed(c, (r * k) % nb, k)
                if t is not None:
                    samples[c.name].append(t * nb / k)
    finally:
        if gc_was:
            gc.enable()
    return {c.name: {"epoch_s": statistics.median(samples[c.name]), "samples_s": samples[c.name],
                     "steps_timed": k_of[c.name], "steps_per_epoch": nb} for c in alive}


# ---------------------------------------------------------------------------- memory
def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def memory_child(workload: str, contender: str, quick: bool) -> dict:
    """Run in a fresh process: peak RSS of one epoch of one contender above the baseline.

    The baseline is the resident size after imports and a warm-up on a tiny dataset (so
    library code and BLAS buffers are not counted). The peak (VmHWM, reset through
    /proc/self/clear_refs after the dataset is built) minus the baseline is the dataset plus
    everything the training loop allocates.
    """
    w = WORKLOADS[workload]
    if quick:
        w = quick_workload(w)
    tiny = Workload(w.name, w.title, w.sizes, w.batch * 3, w.batch)
    Xs, Ts = make_data(tiny)
    c = _make_one(contender, tiny, Xs, Ts)
    c.run(0, 3, 3)
    del c, Xs, Ts
    gc.collect()
    base = _status_kb("VmRSS")
    X, T = make_data(w)
    c = _make_one(contender, w, X, T)
    del X, T
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    c.run(0, w.timed_steps, w.steps_per_epoch)
    peak = _status_kb("VmHWM")
    return {"baseline_mb": base / 1024, "peak_above_baseline_mb": (peak - base) / 1024,
            "dataset_mb": w.dataset_bytes() / 2**20}


def _make_one(name: str, w, X, T) -> Contender:
    if name == "numpy textbook":
        return NumpyTextbook(w, X, T)
    if name == "numpy buffers":
        return NumpyBuffers(w, X, T)
    if name == "xpnet ops inlined":
        return XPNetOpsInlined(w, X, T)
    if name == "torch native":
        return TorchNative(w, X, T)
    if name.startswith("xpnet["):
        return XPNet(w, X, T, name[6:-1])
    raise ValueError(f"unknown contender {name!r}")


def memory_of(workload: str, contender: str, quick: bool, threads: int) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "xpnet.bench", "--_memory", workload, contender,
           "--threads", str(threads)] + (["--quick"] if quick else [])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


# ---------------------------------------------------------------------------- report
def _fmt(v, spec=".3f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _ratio(a, b):
    """``a / b``, or None where either is missing (GPU rows have no floor, a reference may
    have failed)."""
    return a / b if a and b else None


def table(result: dict) -> str:
    """The markdown table of one run (CPU, and GPU when measured)."""
    lines = []
    for section in ("cpu", "gpu"):
        rows = result.get(section)
        if not rows:
            continue
        lines.append(f"### {section.upper()}")
        lines.append("")
        lines.append("| workload | contender | epoch s | vs numpy textbook | vs torch | vs floor "
                     "| peak MB (dataset MB) | steps timed / epoch |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for wname, wres in rows.items():
            ref_np = wres["timings"].get("numpy textbook", {}).get("epoch_s")
            torch_key = "torch native CUDA" if section == "gpu" else "torch native"
            ref_t = wres["timings"].get(torch_key, {}).get("epoch_s")
            floor = wres.get("floor_epoch_s")
            if floor:
                lines.append(f"| {wname} | floor (FLOPs / matmul rate) | {_fmt(floor, '.4f')} | "
                             f"{_fmt(_ratio(floor, ref_np), '.2f', 'x')} | "
                             f"{_fmt(_ratio(floor, ref_t), '.2f', 'x')} | 1.00x | - | - |")
            for name, t in wres["timings"].items():
                e = t["epoch_s"]
                mem = wres.get("memory", {}).get(name, {})
                mem_s = (f"{mem['peak_above_baseline_mb']:.0f} ({mem['dataset_mb']:.0f})"
                         if "peak_above_baseline_mb" in mem else "-")
                lines.append(
                    f"| {wname} | {name} | {_fmt(e, '.4f')} | {_fmt(_ratio(e, ref_np), '.2f', 'x')} "
                    f"| {_fmt(_ratio(e, ref_t), '.2f', 'x')} "
                    f"| {_fmt(_ratio(e, floor), '.2f', 'x')} | {mem_s} "
                    f"| {t['steps_timed']} / {t['steps_per_epoch']} |")
        lines.append("")
    if result.get("errors"):
        lines.append("### Errors (contenders left out)")
        lines.append("")
        for key, err in result["errors"].items():
            lines.append(f"- {key}: {err}")
        lines.append("")
    if result.get("targets"):
        lines.append("### Targets")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for tg in result["targets"]:
            met = {True: "yes", False: "NO", None: "n/a"}[tg["met"]]
            lines.append(f"| {tg['target']} | {tg['measured']} | {met} |")
        lines.append("")
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines)


def targets(cpu: dict, gpu: dict | None) -> list[dict]:
    out = []

    def t_of(w, name, rows=cpu):
        return rows.get(w, {}).get("timings", {}).get(name, {}).get("epoch_s")

    def add(text, measured, met):
        out.append({"target": text, "measured": measured, "met": met})

    x, npt, tn = t_of("W1", "xpnet[numpy]"), t_of("W1", "numpy textbook"), t_of("W1", "torch native")
    if x and npt:
        add("W1: xpnet[numpy] no slower than numpy textbook", f"{x / npt:.2f}x", x <= npt)
    if x and tn:
        add("W1: xpnet[numpy] at most 0.75x torch native", f"{x / tn:.2f}x", x <= 0.75 * tn)
    x2, f2 = t_of("W2", "xpnet[numpy]"), cpu.get("W2", {}).get("floor_epoch_s")
    if x2 and f2:
        add("W2: xpnet[numpy] within 1.5x of the floor", f"{x2 / f2:.2f}x", x2 <= 1.5 * f2)
    x3, i3, m3 = t_of("W3", "xpnet[numpy]"), t_of("W3", "xpnet ops inlined"), t_of("W3", "numpy buffers")
    if x3 and i3:
        ov = (x3 - i3) / x3
        add("W3: xpnet[numpy] Python overhead under 15% of the step "
            "(1 - t(xpnet ops inlined) / t(xpnet[numpy]))", f"{100 * ov:.1f}%", ov < 0.15)
    if x3 and m3:
        ov = (x3 - m3) / x3
        add("W3 (stricter, informative): 1 - t(numpy buffers) / t(xpnet[numpy]), which also counts "
            "the portable ops that hand-tuned NumPy avoids", f"{100 * ov:.1f}%", None)
    ce, cs = t_of("W1", "xpnet[jax] compiled epoch"), t_of("W1", "xpnet[jax] compiled step")
    if ce and npt:
        add("W1: xpnet[jax] compiled epoch at most 0.6x numpy textbook", f"{ce / npt:.2f}x", ce <= 0.6 * npt)
    if ce and tn:
        add("W1: xpnet[jax] compiled epoch at most 0.45x torch native", f"{ce / tn:.2f}x", ce <= 0.45 * tn)
    if cs and npt:
        add("W1: xpnet[jax] compiled step at most 0.85x numpy textbook", f"{cs / npt:.2f}x", cs <= 0.85 * npt)
    xt = t_of("W1", "xpnet[torch]")
    if xt and tn:
        add("W1: xpnet[torch] no slower than torch native", f"{xt / tn:.2f}x", xt <= tn)
    mem = cpu.get("W1", {}).get("memory", {}).get("xpnet[numpy]", {})
    if "peak_above_baseline_mb" in mem:
        add("W1: xpnet[numpy] peak memory at most dataset + 64 MB",
            f"{mem['peak_above_baseline_mb']:.0f} MB (dataset {mem['dataset_mb']:.0f} MB)",
            mem["peak_above_baseline_mb"] <= mem["dataset_mb"] + 64)
    if gpu:
        for w, limit in (("W1", 1.0), ("W2", 1.2)):
            a, b = t_of(w, "xpnet[cupy]", gpu), t_of(w, "torch native CUDA", gpu)
            if a and b:
                add(f"GPU {w}: xpnet[cupy] within {limit}x torch CUDA", f"{a / b:.2f}x", a <= limit * b)
    return out


def run(args) -> dict:
    threads = args.threads
    result: dict = {"machine": machine(), "threads": set_threads(threads), "quick": args.quick,
                    "repeats": args.repeats, "cpu": {}, "gpu": {}, "errors": {}, "notes": []}
    rate = matmul_rate(args.quick)
    result["matmul_flops"] = rate
    if args.backends:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    elif args.quick:
        backends = [b for b in ("numpy", "torch") if B.installed(b)]
    else:
        backends = B.available()
    backends = [b for b in backends if b != "cupy"]  # cupy has the GPU table
    result["backends"] = backends
    for wname in args.workloads.split(","):
        w = WORKLOADS[wname.strip().upper()]
        if args.quick:
            w = quick_workload(w)
        X, T = make_data(w)
        cs = contenders_for(w, X, T, backends, False, result["errors"])
        res = {"workload": w.title, "rows": w.n, "flops_per_step": w.flops(),
               "floor_epoch_s": w.flops() * w.steps_per_epoch / rate["best"],
               "timings": measure(w, cs, args.repeats, 1 if args.quick else 3, result["errors"])}
        del cs
        if args.memory:
            res["memory"] = {}
            names = ["numpy textbook", "xpnet[numpy]"] + (["torch native", "xpnet[torch]"]
                                                          if "torch" in backends else [])
            for name in names:
                res["memory"][name] = memory_of(w.name, name, args.quick, threads)
        result["cpu"][w.name] = res
        if args.verbose:
            print(f"{w.name} done", file=sys.stderr)
    reason = gpu_unavailable_reason()
    makers = gpu_makers(reason is None, torch_cuda_available())
    if makers:
        if reason is not None:
            result["notes"].append(f"no xpnet[cupy] row: {reason}")
        for wname in args.workloads.split(","):
            w = WORKLOADS[wname.strip().upper()]
            if args.quick:
                w = quick_workload(w)
            X, T = make_data(w)
            cs = contenders_for(w, X, T, [], makers, result["errors"])
            result["gpu"][w.name] = {"workload": w.title, "timings": measure(
                w, cs, args.repeats, 1 if args.quick else 3, result["errors"])}
            del cs
    else:
        result["gpu_skipped"] = reason
        result["notes"].append(f"GPU table skipped: {reason}; torch sees no CUDA device either")
    result["targets"] = targets(result["cpu"], result["gpu"] or None)
    result["notes"] += [
        f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; numpy "
        f"{result['machine']['numpy']}, torch {result['machine'].get('torch', '-')}; "
        f"{threads} thread(s) for every contender (torch.set_num_threads; XLA_FLAGS for jax; OPENBLAS_NUM_THREADS="
        f"{result['threads']['OPENBLAS_NUM_THREADS'] or 'unset: OpenBLAS uses all cores'})",
        f"floor: matmul FLOPs of the step / {rate['best'] / 1e9:.0f} GFLOP/s (best of numpy and torch "
        f"on {rate['n']}x{rate['n']} float32 matmuls)",
        f"epoch s: median of {args.repeats} interleaved repeats after a warm-up; where fewer steps "
        "than an epoch were timed (last column) the time is scaled to the epoch",
        "Python overhead (W3) = 1 - t(xpnet ops inlined) / t(xpnet[numpy]): 'xpnet ops inlined' "
        "makes exactly xpnet's array calls, flat, so the difference is layer objects, dicts, checks "
        "and namespace lookups. The stricter 1 - t(numpy buffers) / t(xpnet[numpy]) also charges "
        "xpnet for the portable ops (no out=, one-hot by comparison) that hand-tuned NumPy avoids",
        "peak MB: VmHWM above the resident size after imports and warm-up, one contender per "
        "fresh process, dataset included",
    ]
    return result


def _check_writable(p: argparse.ArgumentParser, flag: str, path: str | None) -> None:
    """Refuse an output file that cannot be written, before minutes of measuring."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        p.error(f"{flag} {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'bench' + flag[1:])}")
    if not os.path.isdir(folder):
        p.error(f"{flag} {path!r}: the folder {folder!r} does not exist; create it first (mkdir -p {folder})")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        p.error(f"{flag} {path!r}: cannot write in {folder!r} ({e.strerror}); pick another folder")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="xpnet bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few-second run: small data, few steps")
    p.add_argument("--workloads", default="W1,W2,W3", help="comma-separated: W1,W2,W3")
    p.add_argument("--backends", default=None,
                   help="xpnet backends to time (default: every installed one)")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help="interleaved repeats (default 7, quick 3)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for every library and contender (default: $XPNET_BENCH_THREADS or 1)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                   help="measure peak memory in subprocesses (default: on, off with --quick)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--markdown", default=None, help="write the table to this markdown file")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--_memory", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bad = [w for w in args.workloads.split(",") if w.strip().upper() not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {bad}; valid: {', '.join(WORKLOADS)}")
    if args.backends is not None:
        names = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in names if b not in B.BACKENDS]
        if unknown or not names:
            p.error(f"--backends {args.backends!r}: unknown backend(s) {unknown}; valid: {', '.join(B.BACKENDS)}")
    if args.threads is None:
        env = os.environ.get("XPNET_BENCH_THREADS", "").strip() or "1"
        try:
            args.threads = _positive_int(env)
        except argparse.ArgumentTypeError as e:
            p.error(f"XPNET_BENCH_THREADS: {e}")
    _check_writable(p, "--json", args.json)
    _check_writable(p, "--markdown", args.markdown)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (2 for bad flags, with a usage message)."""
    try:
        args = _parse(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    xla = f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} " \
          f"intra_op_parallelism_threads={args.threads}"
    if os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads) or xla not in os.environ.get("XLA_FLAGS", ""):
        # BLAS and XLA read their thread counts once, at import: measure in a child process
        # that starts with the same count for every library.
        n = str(args.threads)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
               "XPNET_BENCH_THREADS": n, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {xla}".strip()}
        argv = sys.argv[1:] if argv is None else list(argv)
        return subprocess.run([sys.executable, "-m", "xpnet.bench", *argv], env=env).returncode
    if args._memory:
        set_threads(args.threads)
        print(json.dumps(memory_child(*args._memory, args.quick)))
        return 0
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.memory is None:
        args.memory = not args.quick
    result = run(args)
    if args.json:  # the results first: a failure below must not lose minutes of measuring
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    try:
        text = table(result)
    except Exception as e:
        kept = args.json or "the JSON printed below"
        print(f"xpnet bench: error: the table could not be built ({type(e).__name__}: {e}); "
              f"the results are in {kept}", file=sys.stderr)
        if not args.json:
            print(json.dumps(result, indent=1, default=str))
        return 1
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
