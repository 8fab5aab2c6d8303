"""What every training step offers (:class:`Step`), and the checks and keys the kinds share."""

from __future__ import annotations

import numpy as np

from ..backend import check_same_backend, device, from_host_like, is_writeable, namespace
from ..errors import ConfigError, ShapeError
from ..model import Sequential
from ..optimizers import Optimizer


class Step:
    """One training step of ``model`` with ``optimizer``, in every form the trainer and a user's
    loop need. The eager, jax and CUDA-graph steps all offer the same calls:

    - ``step(x, t)``: one step on a batch; returns its loss (a 0-d array, not read back);
    - ``step.run(xs, ts)``: K steps on batches stacked as (K, B, ...); returns the K losses;
    - ``step.epoch(x, t, order, batch_size, after_step=None)``: the batches ``order[i:i + b]``
      of ``(x, t)`` in turn, gathered on the device; returns ``(losses, mean_loss)``;
      ``after_step`` is called after each step where the steps are separate calls (eager, CUDA
      graph), after the whole epoch where it is one call (jax);
    - ``step.gradient(x, t)`` then ``step.apply(grads)``: the step in two halves, for code that
      changes the gradients in between (the MPI allreduce);
    - ``step.evaluate(fn, *arrays)``: ``fn(model, *arrays)``, compiled where the step is;
    - ``step.copy(arrays)``: copies the step will not change or donate (rollback snapshots).

    ``compiled``, ``reason``, ``auto`` (``compile="auto"`` takes it), ``splits`` (gradient and
    apply are compiled too, so it serves under MPI), ``compiles``, ``compile_seconds`` and
    ``notes`` (things the trainer should print) describe it. Each call leaves the model and the
    optimizer as the eager ``optimizer.update(model.params, model.gradient(x, t))`` would.
    """

    compiled = False
    auto = False
    splits = True
    reason = "eager"

    def __init__(self, model: Sequential, optimizer: Optimizer):
        self.model, self.optimizer = model, optimizer
        self.compiles, self.compile_seconds = 0, 0.0
        self.notes: list[str] = []

    @property
    def _ref(self):
        """A current parameter (a compiled call replaces, and may donate, the previous ones)."""
        return self.model.reference_array

    def __call__(self, x, t):
        raise NotImplementedError

    def run(self, xs, ts):
        """``xs.shape[0]`` steps on batches ``xs[k], ts[k]``; returns the losses, shape (K,)."""
        k = _check_run(xs, ts, self._ref)
        return namespace(xs).stack([self(xs[i, ...], ts[i, ...]) for i in range(k)]) if k else _no_losses(self._ref)

    def epoch(self, x, t, order: np.ndarray, batch_size: int, after_step=None):
        """The batches ``order[i:i + batch_size]`` of ``(x, t)`` in turn (the last one smaller if
        ``batch_size`` does not divide N), gathered on the device. Returns ``(losses,
        mean_loss)``: every step's loss, shape (steps,), and their mean weighted by batch size
        (the epoch's training loss)."""
        order, b = _check_epoch(x, t, order, batch_size, self._ref)
        xp, n = namespace(x), int(x.shape[0])
        idx = from_host_like(order, self._ref)
        losses, total = [], None
        for lo in range(0, n, b):
            sel = idx[lo: min(lo + b, n)]
            loss = self(xp.take(x, sel, axis=0), xp.take(t, sel, axis=0))
            losses.append(loss)
            part = loss * (min(lo + b, n) - lo)
            total = part if total is None else total + part
            if after_step is not None:
                after_step()
        return xp.stack(losses), total / n

    def gradient(self, x, t):
        """``(loss, grads)`` of batch ``(x, t)``: the loss (0-d) and the gradients keyed like
        ``model.params``; the parameters are not changed."""
        loss = self.model.loss(x, t, train=True, check=False)
        self.model.backward(input_grad=False)
        return loss, self.model.grads

    def apply(self, grads) -> None:
        """``optimizer.update(model.params, grads)``."""
        self.optimizer.update(self.model.params, grads)

    def evaluate(self, fn, *arrays):
        return fn(self.model, *arrays)

    def copy(self, arrays: dict) -> dict:
        """A new dict of copies of ``arrays`` (arrays that cannot change in place are shared)."""
        return {k: namespace(v).asarray(v, copy=True) if is_writeable(v) else v for k, v in arrays.items()}


def _check_run(xs, ts, like) -> int:
    """The number of steps in ``run(xs, ts)``: ``xs`` (K, B, ...) and ``ts`` (K, B...) of
    ``like``'s library, with the same K (an extra batch of labels is never ignored silently)."""
    check_same_backend(xs, like, "run's batches xs")
    check_same_backend(ts, like, "run's targets ts")
    if xs.ndim < 2 or ts.ndim < 1 or xs.shape[0] != ts.shape[0]:
        raise ShapeError(f"run(xs, ts) takes K batches stacked: xs of shape (K, B, ...) and ts of shape (K, B) or "
                         f"(K, B, C), got xs {tuple(xs.shape)} and ts {tuple(ts.shape)}; stack the batches with "
                         "xp.stack, or call step(x, t) per batch")
    return int(xs.shape[0])


def _check_epoch(x, t, order, batch_size, like) -> tuple[np.ndarray, int]:
    """``epoch``'s arguments checked: ``(order as int64, batch size)``. An index outside the
    data would be clamped or wrapped on the device, silently training on other samples."""
    check_same_backend(x, like, "epoch's input x")
    check_same_backend(t, like, "epoch's targets t")
    if x.ndim < 2 or t.ndim < 1 or x.shape[0] != t.shape[0] or x.shape[0] == 0:
        raise ShapeError(f"epoch(x, t, ...) takes a non-empty data set: x (N, ...) and t (N,) or (N, C) with the "
                         f"same N, got x {tuple(x.shape)} and t {tuple(t.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"epoch's batch_size must be a positive integer, got {batch_size!r}")
    n = int(x.shape[0])
    host = np.asarray(order)
    if host.ndim != 1 or host.shape[0] != n or not np.issubdtype(host.dtype, np.integer):
        raise ConfigError(f"epoch's order must be a 1-d array of {n} integer sample indices (a permutation such as "
                          f"numpy.random.default_rng(seed).permutation({n})), got {host.dtype} of shape {host.shape}")
    if n and (int(host.min()) < 0 or int(host.max()) >= n):
        raise ConfigError(f"epoch's order holds indices from {int(host.min())} to {int(host.max())}, outside the "
                          f"{n} samples (0 to {n - 1}); on the device they would be clamped, training on other samples")
    return host.astype(np.int64, copy=False), int(batch_size)


def _no_losses(like):
    return namespace(like).zeros((0,), dtype=like.dtype, device=device(like))


def _flat(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flat(item)
        else:
            yield item


def _dropouts(model: Sequential) -> list:
    """The layers that draw a mask from a host generator each training forward."""
    return [layer for layer in model.layers if hasattr(layer, "freeze") and hasattr(layer, "draw_mask")]


def _hashable(value):
    """``value`` with its dicts and lists turned into tuples (a part of a cache key)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _model_key(model: Sequential, optimizer: Optimizer, shapes: bool = True) -> tuple:
    """Everything a compiled step reads besides its array inputs: the layers (the objects and
    their settings: a Dropout ratio, BatchNormalization's momentum), the loss layer, the
    parameters' names, shapes and dtypes, and every hyper-parameter of the optimizer but the
    learning rate (an input). A change to any of them gives another key, so the step is compiled
    (or captured) again instead of running with a stale value baked in. ``shapes=False`` leaves
    the parameters' shapes and dtypes out (a CUDA graph's static buffers refuse such a change)."""
    params = model.params.items()
    seen: dict = {}
    for key, p in params:  # one buffer under two names: donated twice (jax), written twice (a graph)
        other = seen.setdefault(id(p), key)
        if other != key:
            raise ConfigError(f"parameters {other} and {key} are one array (two layers share it); a compiled step "
                              "updates each parameter in place once, so it cannot train shared weights. Give each "
                              "layer its own copy (xp.asarray(W, copy=True)), or train eagerly (--compile off)")
    return (tuple((layer, _hashable(layer.config())) for layer in model.layers), model.loss_layer,
            tuple((k, p.shape, p.dtype) for k, p in params) if shapes else len(params),
            type(optimizer), _hashable({k: v for k, v in optimizer.config().items() if k != "lr"}))
