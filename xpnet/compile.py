"""Compiled training steps: the same textbook layers, traced and compiled by the backend.

::

    step = xpnet.compile_step(model, optimizer)
    loss = step(x, t)           # one step: a 0-d array on the device, no host read
    losses = step.run(xs, ts)   # len(xs) steps in one compiled call: xs (K, B, ...), ts (K, B...)
    loss, grads = step.gradient(x, t)   # the step in two compiled halves, for code that changes
    step.apply(grads)                   # the gradients in between (the MPI allreduce)

A step leaves the model and the optimizer exactly as the eager
``optimizer.update(model.params, model.gradient(x, t, check=False))`` would (the labels are
not checked: validate the data once beforehand, as the trainer does). Between calls
``model.params`` hold ordinary arrays, so ``predict``, ``gradient``, checkpoints and the eager
path keep working.

What each backend does:

- jax: the step is a pure function of (parameters, layer state, optimizer state, step count,
  batch, dropout masks, learning rate), traced once through the unchanged layers and compiled
  with ``jax.jit``; parameters and optimizer state are donated (updated in place).
  ``run`` is one ``lax.scan`` over the steps. ``gradient`` compiles the forward and backward
  alone (parameters not donated; the new BatchNormalization statistics installed), ``apply``
  the optimizer's update alone (parameters and optimizer state donated): the two leave the
  model and the optimizer as one ``step(x, t)`` does.
- cupy, and torch on CUDA: the eager step captured as a CUDA graph once per batch shape and
  replayed (:class:`GraphStep`: static buffers updated in place, the learning rate and step count
  on the device). Not yet run on a GPU, so the trainer's ``compile="auto"`` keeps them eager;
  ``compile_step`` and ``compile="on"`` use it. No ``gradient``/``apply`` halves yet (not under MPI).
- every other backend (numpy, torch on the CPU, dask, array_api_strict): no compiler is used
  here; the eager step is returned with ``step.compiled == False`` and ``step.reason`` saying why
  (``compile_step`` warns once unless ``warn=False``).

Dropout masks are drawn on the host from each layer's seeded generator, in the order the eager
layers draw them, and passed in as inputs: they change every step and are the same numbers as
eager for a seed. BatchNormalization's running statistics are part of the carried state.

What compiles (jax): the first call for each batch shape (an epoch's smaller last batch is one
more), each new number of steps given to ``run``, a new dtype, and a change of a
hyper-parameter other than the learning rate (momentum, betas, eps, weight decay). A new
learning rate does not recompile: it is an input. ``step.compiles`` counts compilations and
``step.compile_seconds`` sums their time.

Compiled executables can be kept on disk between processes with :func:`use_cache` (``xpnet
train`` does, in ``~/.cache/xpnet/jax`` unless ``XPNET_COMPILE_CACHE`` says otherwise): a later
run with the same model, batch shapes and jax version loads them instead of compiling. The
cache is jax's own persistent compilation cache, keyed by the compiled program itself, so a
changed model or jax version can never pick up a stale executable.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .backend import (
    backend_name,
    check_same_backend,
    device,
    device_label,
    from_host_like,
    host_dtype,
    is_writeable,
    namespace,
)
from .errors import CaptureError, ConfigError, ShapeError
from .model import Sequential
from .optimizers import Optimizer

# what --compile does on each backend (``xpnet info`` prints it)
BACKEND_SUMMARY = {
    "jax": "jax.jit (--compile auto and on)",
    "cupy": "CUDA graph (--compile on only: not yet run on a GPU)",
    "torch": "CUDA graph on a CUDA device (--compile on only: not yet run on a GPU), eager on the CPU",
}
CACHE_ENV = "XPNET_COMPILE_CACHE"  # a folder, or "off"; unset: cache_dir_default()
CACHE_OFF = ("off", "0", "no", "none", "false")


def cache_dir_default() -> Path:
    """Where ``xpnet train`` keeps compiled executables: ``$XDG_CACHE_HOME/xpnet/jax``
    (``~/.cache/xpnet/jax`` when that is unset)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return Path(base if base else Path.home() / ".cache") / "xpnet" / "jax"


def _cache_problem(path: Path) -> str | None:
    """Why executables cannot be written under ``path`` (None when they can); creates nothing."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return "has no existing parent folder"
        probe = probe.parent
    if not probe.is_dir():
        return f"cannot be created: {str(probe)!r} is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"is not writable ({str(probe)!r} is read-only)"
    return None


def cache_setting(path=None) -> tuple[Path | None, str]:
    """What :func:`use_cache` would do, changing nothing: ``(folder, "on")``, or ``(None, why)``
    when the cache would be off. ``path=None`` reads ``XPNET_COMPILE_CACHE``: a folder, or
    ``off``; unset means :func:`cache_dir_default`."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None, "JAX_COMPILATION_CACHE_DIR is set: jax's own setting is used"
    if path is None:
        value = os.environ.get(CACHE_ENV)
        if value is not None and value.strip().lower() in CACHE_OFF + ("",):
            return None, f"turned off by {CACHE_ENV}={value}"
        path = Path(value).expanduser() if value is not None else cache_dir_default()
    elif not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ConfigError(f"use_cache: expected a folder path, got {path!r}")
    path = Path(path).expanduser().absolute()
    problem = _cache_problem(path)
    if problem:
        return None, f"the compile cache folder {str(path)!r} {problem}; set {CACHE_ENV} to another folder or 'off'"
    return path, "on"


def _drop_folders(folder: Path) -> None:
    """Remove folders found among the cache's entries (jax writes files only; a folder in an
    entry's place, from a copy gone wrong, could be neither read nor replaced, run after run)."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def use_cache(path=None) -> tuple[Path | None, str]:
    """Keep jax's compiled executables in the folder ``path`` across processes (jax's persistent
    compilation cache, every executable however quick its compile). ``path=None`` reads
    ``XPNET_COMPILE_CACHE``: a folder, or ``off``; unset means :func:`cache_dir_default`.

    Returns ``(folder, "on")``, or ``(None, why)`` when the cache stays off (turned off, a folder
    that cannot be written, or jax's own ``JAX_COMPILATION_CACHE_DIR`` set, which is then left
    in charge). Never imports jax: it is configured now if already imported, else when it is.
    Only jax compiles in xpnet, so other backends are unaffected."""
    folder, why = cache_setting(path)
    if folder is None:
        return folder, why
    _drop_folders(folder)
    settings = {"jax_compilation_cache_dir": str(folder), "jax_persistent_cache_min_compile_time_secs": 0}
    jax = sys.modules.get("jax")
    if jax is not None and hasattr(jax, "config"):
        for name, value in settings.items():
            jax.config.update(name, value)
    else:  # read by jax when it is imported
        for name, value in settings.items():
            os.environ[name.upper()] = str(value)
    return folder, why


def compile_step(model: Sequential, optimizer: Optimizer, warn: bool = True):
    """A training step for ``model`` and ``optimizer``, compiled where the backend allows it.

    Returns an object ``step`` with ``step(x, t) -> loss``, ``step.run(xs, ts) -> losses``,
    ``step.compiled`` and ``step.reason``. On a backend without a compiler the eager step is
    returned (with a warning unless ``warn=False``), never an error.
    """
    if not isinstance(model, Sequential) or not model.params:
        raise ConfigError(
            "compile_step needs a model with parameters (an xpnet.Sequential such as xpnet.mlp(...)), "
            f"got {type(model).__name__}"
        )
    if not isinstance(optimizer, Optimizer):
        raise ConfigError(f"compile_step needs an xpnet optimizer (e.g. xpnet.SGD(lr=0.1)), got "
                          f"{type(optimizer).__name__}")
    ref = next(iter(model.params.values()))
    name = backend_name(ref)
    if name == "jax":
        return JaxStep(model, optimizer)
    kind = _graph_kind(name, ref)
    if kind is not None:
        return GraphStep(model, optimizer, kind, f"CUDA graph ({name}): the step captured once per batch shape, "
                                                 "then replayed")
    reason = f"no compiler is used for {name} arrays: the step runs eagerly"
    if name == "torch":
        reason += (" (torch.compile was measured slower than eager on the CPU; a CUDA graph needs a CUDA "
                   "device)")
    if warn:
        warnings.warn(f"xpnet.compile_step: {reason}", RuntimeWarning, stacklevel=2)
    return EagerStep(model, optimizer, reason)


class EagerStep:
    """The textbook step, uncompiled: loss, backward, update."""

    compiled = False
    auto = False

    def __init__(self, model: Sequential, optimizer: Optimizer, reason: str = "eager"):
        self.model, self.optimizer, self.reason = model, optimizer, reason
        self.compiles, self.compile_seconds = 0, 0.0
        self.notes: list[str] = []  # nothing to tell: no compile cache here

    def __call__(self, x, t):
        loss = self.model.loss(x, t, train=True, check=False)
        self.model.backward(input_grad=False)
        self.optimizer.update(self.model.params, self.model.grads)
        return loss

    def run(self, xs, ts):
        ref = next(iter(self.model.params.values()))
        k = _check_run(xs, ts, ref)
        return namespace(xs).stack([self(xs[i, ...], ts[i, ...]) for i in range(k)]) if k else _no_losses(ref)

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
            tuple((k, tuple(p.shape), str(p.dtype)) for k, p in params) if shapes else len(params),
            type(optimizer), _hashable({k: v for k, v in optimizer.config().items() if k != "lr"}))


class JaxStep:
    """``jax.jit`` of the step as a pure function; ``run`` is a ``lax.scan`` of it."""

    compiled = True
    auto = True  # measured faster than eager: --compile auto uses it
    reason = "jax.jit (parameters and optimizer state donated); run() is one lax.scan"

    def __init__(self, model: Sequential, optimizer: Optimizer):
        import jax

        self.jax = jax
        self.model, self.optimizer = model, optimizer
        self.compiles, self.compile_seconds = 0, 0.0
        self.notes: list[str] = []  # things the trainer should tell (a damaged compile-cache entry)
        self._executables: dict = {}
        self._mask_shapes: dict = {}
        self._lr = self._count = None  # (host value, device array): uploaded only when it changes

    @property
    def dropouts(self) -> list:
        """The model's Dropout layers now (a layer replaced since the last call is seen)."""
        return _dropouts(self.model)

    @property
    def _ref(self):
        """A current parameter (the previous ones were donated to the last call)."""
        return next(iter(self.model.params.values()))

    # ------------------------------------------------------------------ state in and out
    def _device_scalar(self, attr: str, value):
        """``value`` as a 0-d device array in the parameters' dtype, uploaded only when it changes."""
        cached = getattr(self, attr)
        if cached is None or cached[0] != value or cached[1].is_deleted():  # donated by an interrupted call
            cached = (value, self.jax.numpy.asarray(value, dtype=self._ref.dtype))
            setattr(self, attr, cached)
        return cached[1]

    def _carry(self) -> tuple:
        m, o = self.model, self.optimizer
        if o._params is not m.params:  # another model's optimizer is refused before a slot is made
            o._bind(m.params, list(m.params.items()))
        params = dict(m.params.items())
        for slot in o.slots:  # create the optimizer's slots now: the carry keeps one structure
            if len(o.state[slot]) != len(params):
                for key, p in params.items():  # zeros uploaded from the host: no compile per shape
                    if key not in o.state[slot]:
                        o.state[slot][key] = from_host_like(np.zeros(p.shape, host_dtype(p.dtype)), p)
        # the step count travels in the parameters' dtype, so that an optimizer's ``b ** step``
        # stays in that dtype (an integer count would promote to float64 under jax's x64)
        return (params, dict(m.state.items()), {s: dict(o.state[s]) for s in o.slots},
                self._device_scalar("_count", int(o.state["step"])))

    def _install(self, carry) -> None:
        params, state, slots, count = carry
        m, o = self.model, self.optimizer
        m.params.update(params)
        m.state.update(state)
        for s, arrays in slots.items():
            o.state[s] = dict(arrays)
        o.state["step"] = count

    @contextlib.contextmanager
    def _traced(self, carry, masks, lr):
        """Put traced values into the model and optimizer for one trace; put the concrete
        ones back afterwards and drop every tracer the layers kept (no leaked tracers)."""
        m, o = self.model, self.optimizer
        saved = (dict(m.params.items()), dict(m.state.items()), {s: dict(o.state[s]) for s in o.slots},
                 o.state["step"])
        saved_lr = o.lr
        saved_masks = [(d.mask, d.freeze) for d in self.dropouts]
        try:
            self._install(carry)
            o.lr = lr
            for d, mask in zip(self.dropouts, masks):
                d.mask, d.freeze = mask, True
            yield
        finally:
            self._install(saved)
            o.lr = saved_lr
            for d, (mask, freeze) in zip(self.dropouts, saved_masks):
                d.mask, d.freeze = mask, freeze
            for obj in [*m.layers, m.loss_layer, o]:
                self._drop_tracers(obj)

    def _drop_tracers(self, obj) -> None:
        Tracer = self.jax.core.Tracer
        for k, v in list(vars(obj).items()):
            if isinstance(v, Tracer):
                setattr(obj, k, None)
            elif isinstance(v, dict) and k not in ("params", "state"):
                for key, item in list(v.items()):
                    inner = item if isinstance(item, tuple) else (item,)
                    if any(isinstance(i, Tracer) for i in inner):
                        del v[key]

    # ------------------------------------------------------------------ the pure step
    def _pure_step(self, carry, x, t, masks, lr):
        with self._traced(carry, masks, lr):
            loss = self.model.loss(x, t, train=True, check=False)
            self.model.backward(input_grad=False)
            self.optimizer.update(self.model.params, self.model.grads)
            m, o = self.model, self.optimizer
            new = (dict(m.params.items()), dict(m.state.items()), {s: dict(o.state[s]) for s in o.slots},
                   o.state["step"])
        return new, loss

    def _pure_run(self, carry, xs, ts, masks, lr):
        def body(c, batch):
            x, t, m = batch
            return self._pure_step(c, x, t, m, lr)

        return self.jax.lax.scan(body, carry, (xs, ts, masks))

    def _pure_gradient(self, weights, x, t, masks):
        """``(loss, grads, new layer state)`` of one batch; ``weights``: (parameters, layer state)."""
        o = self.optimizer
        carry = (*weights, {s: dict(o.state[s]) for s in o.slots}, o.state["step"])
        with self._traced(carry, masks, o.lr):
            loss = self.model.loss(x, t, train=True, check=False)
            self.model.backward(input_grad=False)
            out = (loss, self.model.grads, dict(self.model.state.items()))
        return out

    def _pure_apply(self, carry, state, grads, lr):
        """The optimizer's update alone; ``carry``: (parameters, optimizer slots, step count)."""
        params, slots, count = carry
        with self._traced((params, state, slots, count), [None] * len(self.dropouts), lr):
            m, o = self.model, self.optimizer
            o.update(m.params, grads)
            new = (dict(m.params.items()), {s: dict(o.state[s]) for s in o.slots}, o.state["step"])
        return new

    # ------------------------------------------------------------------ masks
    def _masks_for(self, x_shape) -> list:
        """The shape of each Dropout layer's input for a batch of shape ``x_shape`` (traced
        abstractly once per shape; no random numbers drawn)."""
        cache_key = (_model_key(self.model, self.optimizer)[0], x_shape)
        shapes = self._mask_shapes.get(cache_key)
        if shapes is None:
            dropouts = self.dropouts

            def forward(carry, x):
                seen = []
                with self._traced(carry, [None] * len(self.dropouts), self.optimizer.lr):
                    for layer in self.model.layers:
                        if layer in dropouts:
                            seen.append(x)
                        else:
                            x = layer.forward(x, True)
                return seen

            x = self.jax.ShapeDtypeStruct(x_shape, self._ref.dtype)
            shapes = [tuple(s.shape) for s in self.jax.eval_shape(forward, self._carry(), x)]
            self._mask_shapes[cache_key] = shapes
        return shapes

    def _draw(self, x_shape, steps: int | None):
        """Host-drawn masks for ``steps`` steps (None: one step), as device arrays."""
        shapes = self._masks_for(tuple(x_shape))
        if not shapes:
            return []
        dt = host_dtype(self._ref.dtype)
        per_step = [[d.draw_mask(shape, dt) for d, shape in zip(self.dropouts, shapes)]
                    for _ in range(1 if steps is None else steps)]
        if steps is None:
            return [from_host_like(m, self._ref) for m in per_step[0]]
        return [from_host_like(np.stack([s[i] for s in per_step]), self._ref) for i in range(len(shapes))]

    # ------------------------------------------------------------------ calls
    def _executable(self, kind: str, args, fn=None, donate: bool = True, static=()):
        """The compiled ``fn`` for ``args``' shapes (compiled on first use); ``donate``: the
        first argument's buffers are given to the call (updated in place)."""
        # the model's arrays keep their shapes: the batch's shapes and dtypes tell calls apart
        batch = args[1:]
        key = (kind, _model_key(self.model, self.optimizer), static,
               tuple((tuple(a.shape), a.dtype) for a in batch if hasattr(a, "shape")),
               tuple(tuple(m.shape) for ms in batch if isinstance(ms, (list, tuple)) for m in _flat(ms)))
        exe = self._executables.get(key)
        if exe is None:
            fn = fn or (self._pure_step if kind == "step" else self._pure_run)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                exe = self.jax.jit(fn, donate_argnums=(0,) if donate else ()).lower(*args).compile()
            self._cache_warnings(caught)
            self.compile_seconds += time.perf_counter() - t0
            self.compiles += 1
            self._executables[key] = exe
        return exe

    def _cache_warnings(self, caught) -> None:
        """jax warns, and recompiles, when an entry of the persistent compile cache cannot be read
        (a file cut short by a full disk or a killed run), and would keep the damaged file for
        ever: remove it so the next run writes it afresh, and keep one note for the trainer."""
        for w in caught:
            text = str(w.message)
            found = re.search(r"persistent compilation cache entry for '([^']+)'", text)
            folder = self.jax.config.jax_compilation_cache_dir
            if found is None or not folder:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                continue
            removed = 0
            for entry in Path(folder).glob(f"{glob.escape(found.group(1))}-*"):
                with contextlib.suppress(OSError):  # a folder in an entry's place is removed too
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                    removed += 1
            self.notes.append(f"the compile cache in {folder!r} held an entry that could not be read "
                              f"({text.split(': ', 1)[-1][:120]}); compiled afresh, and {removed} file(s) "
                              "removed so the next run rewrites them")

    def _call(self, kind: str, x, t, masks, steps: int):
        check_same_backend(x, self._ref, "compiled step input")
        check_same_backend(t, self._ref, "compiled step targets")
        lr = self._device_scalar("_lr", float(self.optimizer.lr))
        step0 = int(self.optimizer.state["step"])
        args = (self._carry(), x, t, masks, lr)
        carry, out = self._executable(kind, args)(*args)
        self._install(carry)
        self.optimizer.state["step"] = step0 + steps  # a host int again, as eager keeps it
        self._count = (step0 + steps, carry[3])
        return out

    def __call__(self, x, t):
        """One step on batch ``(x, t)``; returns its loss (a 0-d array, not read back)."""
        return self._call("step", x, t, self._draw(x.shape, None), 1)

    def run(self, xs, ts):
        """``xs.shape[0]`` steps on batches ``xs[k], ts[k]`` in one compiled call; returns the
        losses, shape (K,)."""
        k = _check_run(xs, ts, self._ref)
        if not k:
            return _no_losses(self._ref)
        return self._call("run", xs, ts, self._draw(xs.shape[1:], k), k)

    def gradient(self, x, t):
        """``(loss, grads)`` of batch ``(x, t)`` in one compiled call: the loss (a 0-d array) and
        a dict of gradients keyed like ``model.params``. The parameters are inputs, not donated
        and not changed; BatchNormalization's running statistics are updated as the eager forward
        updates them, and Dropout masks are drawn as the eager layers draw them. ``apply(grads)``
        then makes the update: together they leave the model and the optimizer as ``step(x, t)``."""
        check_same_backend(x, self._ref, "compiled gradient input")
        check_same_backend(t, self._ref, "compiled gradient targets")
        m = self.model
        args = ((dict(m.params.items()), dict(m.state.items())), x, t, self._draw(x.shape, None))
        loss, grads, state = self._executable("gradient", args, self._pure_gradient, donate=False)(*args)
        m.state.update(state)
        return loss, {k: grads[k] for k in m.params}  # in the parameters' order (jax sorts a dict's keys)

    def apply(self, grads) -> None:
        """``optimizer.update(model.params, grads)`` in one compiled call: the parameters and the
        optimizer's state are donated (updated in place), the learning rate is an input (a new
        one does not recompile). ``grads`` is checked first, with the optimizer's own errors,
        before anything is donated or changed."""
        m, o = self.model, self.optimizer
        items = m.params.items()
        if o._params is not m.params:
            o._bind(m.params, items)  # another model's optimizer is refused, as update refuses it
        gs = o._check_grads(items, grads)
        grads = {k: g for (k, _), g in zip(items, gs)}  # any mapping the check accepts, as a dict
        lr = self._device_scalar("_lr", float(o.lr))
        step0 = int(o.state["step"])
        params, state, slots, count = self._carry()
        args = ((params, slots, count), state, grads, lr)
        params, slots, count = self._executable("apply", args, self._pure_apply)(*args)
        self._install((params, state, slots, count))
        o.state["step"] = step0 + 1  # a host int again, as eager keeps it
        self._count = (step0 + 1, count)

    def epoch(self, x, t, order: np.ndarray, batch_size: int):
        """A whole epoch in one compiled call: the batches ``order[i:i + batch_size]`` of
        ``(x, t)`` in turn (the last one smaller if ``batch_size`` does not divide N), gathered
        on the device. Returns ``(losses, mean_loss)``: every step's loss, shape (steps,), and
        their mean weighted by batch size (the epoch's training loss)."""
        order, b = _check_epoch(x, t, order, batch_size, self._ref)
        n = int(x.shape[0])
        k, rest = n // b, n - (n // b) * b
        masks = (self._draw((b, *x.shape[1:]), k) if k else [],
                 self._draw((rest, *x.shape[1:]), None) if rest else [])
        jnp = self.jax.numpy
        idx = from_host_like(np.asarray(order, dtype=np.int64), self._ref)
        lr = self._device_scalar("_lr", float(self.optimizer.lr))
        step0 = int(self.optimizer.state["step"])
        args = (self._carry(), x, t, idx, masks, lr)

        def pure_epoch(carry, x, t, idx, masks, lr):
            losses, total = [], 0.0
            if k:
                sel = idx[: k * b]
                xs = jnp.reshape(jnp.take(x, sel, axis=0), (k, b, *x.shape[1:]))
                ts = jnp.reshape(jnp.take(t, sel, axis=0), (k, b, *t.shape[1:]))
                carry, full = self._pure_run(carry, xs, ts, masks[0], lr)
                losses.append(full)
                total = jnp.sum(full) * b
            if rest:
                sel = idx[k * b :]
                xr, tr = jnp.take(x, sel, axis=0), jnp.take(t, sel, axis=0)
                carry, last = self._pure_step(carry, xr, tr, masks[1], lr)
                losses.append(jnp.reshape(last, (1,)))
                total = total + last * rest
            return carry, jnp.concatenate(losses), total / n

        carry, losses, mean = self._executable("epoch", args, pure_epoch, static=(b,))(*args)
        self._install(carry)
        self.optimizer.state["step"] = step0 + k + (1 if rest else 0)
        self._count = (self.optimizer.state["step"], carry[3])
        return losses, mean

    def evaluate(self, fn, *arrays):
        """``fn(model, *arrays)`` compiled, with the model's current parameters and state as
        inputs (not donated, not changed); for evaluation passes written for eager arrays."""
        m = self.model
        args = ((dict(m.params.items()), dict(m.state.items())), *arrays)

        def pure(weights, *arrays):
            carry = (*weights, {s: dict(self.optimizer.state[s]) for s in self.optimizer.slots},
                     self.optimizer.state["step"])
            with self._traced(carry, [None] * len(self.dropouts), self.optimizer.lr):
                return fn(self.model, *arrays)

        self._carry()  # the optimizer's slots exist before any trace
        return self._executable(("evaluate", fn), args, pure, donate=False)(*args)

    def copy(self, tree):
        """Fresh device copies of the arrays in ``tree`` (kept while later steps donate theirs)."""
        leaves, treedef = self.jax.tree_util.tree_flatten(tree)
        if not leaves:
            return self.jax.tree_util.tree_unflatten(treedef, [])  # a new (empty) structure, never ``tree``
        static = (treedef, tuple((tuple(a.shape), a.dtype) for a in leaves))
        return self._executable("copy", (tree,), static=static, fn=lambda tr: self.jax.tree_util.tree_map(
            lambda a: self.jax.numpy.array(a, copy=True), tr), donate=False)(tree)


# ---------------------------------------------------------------------- CUDA graphs (cupy, torch)
class _CupyGraph:
    """One CUDA graph through CuPy's stream capture, with a memory pool of its own: the
    temporaries the captured kernels write stay reserved for the graph (no other allocation
    can be handed their addresses while it may replay)."""

    def __init__(self, ref):
        import cupy

        self.cupy = cupy
        self.pool = cupy.cuda.MemoryPool()
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.graph = None

    @contextlib.contextmanager
    def warmup(self):
        """The block runs on the capture stream and allocates from the graph's pool, so the
        capture that follows finds every block it needs already there."""
        cp = self.cupy
        cp.cuda.get_current_stream().synchronize()  # the inputs written on the current stream
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            yield
        self.stream.synchronize()

    def capture(self, body) -> None:
        cp = self.cupy
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            self.stream.begin_capture()  # relaxed mode: the pool may still grow during capture
            try:
                body()
            finally:
                self.graph = self.stream.end_capture()

    def replay(self) -> None:
        self.graph.launch(self.cupy.cuda.get_current_stream())  # in order with the copies around it


class _TorchGraph:
    """One CUDA graph through ``torch.cuda.CUDAGraph`` (torch keeps a private pool for it)."""

    def __init__(self, ref):
        import torch

        self.torch = torch
        self.graph = torch.cuda.CUDAGraph()
        self.side = torch.cuda.Stream(ref.device)

    @contextlib.contextmanager
    def warmup(self):
        torch = self.torch
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            yield
        torch.cuda.current_stream().wait_stream(self.side)

    def capture(self, body) -> None:
        with self.torch.cuda.graph(self.graph):
            body()

    def replay(self) -> None:
        self.graph.replay()


def _graph_kind(name: str, ref):
    """The CUDA-graph class for arrays of backend ``name`` like ``ref``, or None."""
    if name == "cupy":
        return _CupyGraph
    if name == "torch" and device_label(device(ref)).startswith("cuda"):
        return _TorchGraph
    return None


def _own(a):
    """A private, writeable copy of array ``a`` (a static buffer)."""
    return namespace(a).asarray(a, copy=True)


class _Captured:
    """One batch shape's graph and the static buffers it reads (batch, targets, Dropout
    masks) and writes (the loss)."""

    def __init__(self, graph, x, t):
        self.graph, self.x, self.t = graph, _own(x), _own(t)
        self.masks: list | None = None  # made after the warm-up, from the masks it drew
        self.loss = None


class GraphStep:
    """The eager step captured as a CUDA graph once per batch shape and replayed (cupy; torch
    on CUDA). Everything the graph reads or writes sits at a fixed address: the model's
    parameters and layer state and the optimizer's slots (updated in place; arrays put into the
    model since, by a rollback or a loaded checkpoint, are copied in before the next replay),
    the learning rate and the step count (0-d device arrays: a new learning rate does not
    recapture), the batch and the Dropout masks (copied in before each replay). The first call
    for a batch shape runs the step once on the capture stream (a warm-up that is that call's
    real step), then captures it. Not yet run on a GPU: ``--compile auto`` keeps these
    backends eager; ``compile_step`` or ``--compile on`` asks for it."""

    compiled = True
    auto = False  # not yet measured against eager on a GPU

    def __init__(self, model: Sequential, optimizer: Optimizer, graph_kind, reason: str):
        self.model, self.optimizer, self.reason = model, optimizer, reason
        self._graph_kind = graph_kind
        self._model = None  # the model key the graphs and statics were made for (see _model_key)
        self.compiles, self.compile_seconds = 0, 0.0
        self.notes: list[str] = []
        self._graphs: dict = {}
        self._statics = None  # (params, layer state, {slot: arrays}): what every graph reads and writes
        self._lr = self._count = None  # [host value, 0-d device array]

    @property
    def _ref(self):
        return next(iter(self.model.params.values()))

    @property
    def dropouts(self) -> list:
        return _dropouts(self.model)

    # ------------------------------------------------------------------ static state
    def _pairs(self):
        """(the live mapping, its static arrays) for parameters, layer state and optimizer slots."""
        params, state, slots = self._statics
        o = self.optimizer
        return [(self.model.params, params), (self.model.state, state), *((o.state[s], slots[s]) for s in o.slots)]

    def _bind(self) -> None:
        """Make the statics the arrays the model and optimizer hold: on the first call, the
        arrays themselves (copies of read-only ones); later, arrays put in since are copied into
        the statics, in place, and replaced by them."""
        m, o = self.model, self.optimizer
        if self._statics is None:
            if o._params is not m.params:  # another model's optimizer is refused now, as update refuses it
                o._bind(m.params, list(m.params.items()))
            for slot in o.slots:  # every slot exists before the first capture
                for key, p in m.params.items():
                    if key not in o.state[slot]:
                        o.state[slot][key] = from_host_like(np.zeros(p.shape, host_dtype(p.dtype)), p)
            own = lambda arrays: {k: v if is_writeable(v) else _own(v) for k, v in arrays.items()}
            self._statics = (own(m.params), own(m.state), {s: own(o.state[s]) for s in o.slots})
        self._adopt(check=True)

    def _adopt(self, check: bool) -> None:
        """Copy every array that is not its static (put into the model since, or rebound by the
        step) into the static, in place, and put the static back in its place. ``check``: refuse
        an array of another shape, dtype or library first (from outside the step)."""
        for mapping, statics in self._pairs():
            for key, static in statics.items():
                live = mapping[key]
                if live is static:
                    continue
                if check:
                    if tuple(live.shape) != tuple(static.shape) or live.dtype != static.dtype:
                        raise ConfigError(f"{key!r} changed from shape {tuple(static.shape)} {static.dtype} to "
                                          f"{tuple(live.shape)} {live.dtype} since the step was captured; make a "
                                          "new compile_step for a changed model")
                    check_same_backend(live, static, f"{key!r}")
                static[...] = live
                mapping[key] = static

    def _scalar(self, attr: str, value):
        """The 0-d device array ``attr`` holding ``value``, written in place when the value
        changes (the graphs read it at every replay)."""
        cached = getattr(self, attr)
        if cached is None:
            arr = _own(from_host_like(np.asarray(value, dtype=host_dtype(self._ref.dtype)), self._ref))
            setattr(self, attr, [value, arr])
        elif cached[0] != value:
            cached[1][...] = value
            cached[0] = value
        return getattr(self, attr)[1]

    # ------------------------------------------------------------------ the captured body
    def _body(self, g: _Captured) -> None:
        """One eager step on ``g``'s static inputs, every result written back into the statics."""
        m, o = self.model, self.optimizer
        host = (o.lr, o.state["step"], [(d.mask, d.freeze) for d in self.dropouts])
        o.lr, o.state["step"] = self._lr[1], self._count[1]
        if g.masks is not None:  # captured: the masks are inputs; the warm-up draws as eager does
            for d, mask in zip(self.dropouts, g.masks):
                d.mask, d.freeze = mask, True
        try:
            loss = m.loss(g.x, g.t, train=True, check=False)
            m.backward(input_grad=False)
            o.update(m.params, m.grads)
            if g.loss is None:
                g.loss = _own(loss)
            else:
                g.loss[...] = loss
            self._adopt(check=False)  # what the update rebound (slots, running statistics)
            if o.state["step"] is not self._count[1]:
                self._count[1][...] = o.state["step"]
        finally:
            o.lr, o.state["step"] = host[0], host[1]
            if g.masks is not None:  # (the warm-up leaves the masks it drew, as an eager step does)
                for d, (mask, freeze) in zip(self.dropouts, host[2]):
                    d.mask, d.freeze = mask, freeze

    def _caches(self) -> list:
        """What the layers kept of their last forward and backward, to put back after a capture
        (a capture runs no kernel: arrays made during it hold no values)."""
        return [(obj, {k: dict(v) if isinstance(v, dict) else v for k, v in vars(obj).items()
                       if k not in ("params", "state")}) for obj in [*self.model.layers, self.model.loss_layer]]

    def _capture(self, key, x, t) -> _Captured:
        t0 = time.perf_counter()
        g = _Captured(self._graph_kind(self._ref), x, t)
        with g.graph.warmup():
            self._body(g)  # this call's step
        g.masks = [_own(d.mask) for d in self.dropouts]
        kept = self._caches()
        self._graphs[key] = g
        try:
            g.graph.capture(lambda: self._body(g))
        except Exception as e:  # the warm-up was this call's step: it stands, and the error says so
            del self._graphs[key]
            return g, e
        except BaseException:
            del self._graphs[key]
            raise
        finally:
            for obj, attrs in kept:
                for k, v in attrs.items():
                    if isinstance(v, dict):
                        live = getattr(obj, k)
                        live.clear()
                        live.update(v)
                    else:
                        setattr(obj, k, v)
        self.compiles += 1
        self.compile_seconds += time.perf_counter() - t0
        return g, None

    # ------------------------------------------------------------------ calls
    def _step(self, x, t):
        check_same_backend(x, self._ref, "captured step input")
        check_same_backend(t, self._ref, "captured step targets")
        o = self.optimizer
        model = _model_key(self.model, o, shapes=False)
        if model != self._model:  # a layer, a setting or a hyper-parameter changed: capture afresh
            self._graphs.clear()
            self._statics, self._model = None, model
        self._bind()
        self._scalar("_lr", float(o.lr))
        step0 = int(o.state["step"])
        self._scalar("_count", step0)
        self._count[0] = None  # unknown until the step completes: an interrupted one is rewritten next time
        key = (tuple(x.shape), str(x.dtype), tuple(t.shape), str(t.dtype))
        g, failed = self._graphs.get(key), None
        if g is None:
            g, failed = self._capture(key, x, t)
        else:
            g.x[...] = x
            g.t[...] = t
            for d, mask in zip(self.dropouts, g.masks):  # drawn on the host in the eager order
                mask[...] = from_host_like(d.draw_mask(tuple(mask.shape), host_dtype(mask.dtype)), mask)
            g.graph.replay()
        o.state["step"] = step0 + 1  # a host int, as eager keeps it
        self._count[0] = step0 + 1
        if failed is not None:
            raise CaptureError(
                f"the training step could not be captured as a CUDA graph for batch shape {tuple(x.shape)} "
                f"({type(failed).__name__}: {failed}). This call's step ran eagerly and stands (step "
                f"{step0 + 1}); train with --compile off (compile='off'), or call model.gradient and "
                "optimizer.update yourself") from failed
        return _own(g.loss)

    def __call__(self, x, t):
        """One step on batch ``(x, t)``; returns its loss (a 0-d array, not read back)."""
        return self._step(x, t)

    def run(self, xs, ts):
        """``xs.shape[0]`` steps on batches ``xs[k], ts[k]``; returns the losses, shape (K,)."""
        k = _check_run(xs, ts, self._ref)
        return namespace(xs).stack([self._step(xs[i, ...], ts[i, ...]) for i in range(k)]) if k else \
            _no_losses(self._ref)

    def epoch(self, x, t, order: np.ndarray, batch_size: int):
        """The trainer's epoch: the batches ``order[i:i + batch_size]`` of ``(x, t)`` in turn,
        gathered on the device; returns ``(losses, mean_loss)`` as :meth:`JaxStep.epoch`."""
        order, b = _check_epoch(x, t, order, batch_size, self._ref)
        xp = namespace(x)
        n = int(x.shape[0])
        idx = from_host_like(order, self._ref)
        losses, total = [], None
        for lo in range(0, n, b):
            sel = idx[lo: min(lo + b, n)]
            loss = self._step(xp.take(x, sel, axis=0), xp.take(t, sel, axis=0))
            losses.append(loss)
            part = loss * (min(lo + b, n) - lo)
            total = part if total is None else total + part
        return xp.stack(losses), total / n

    def evaluate(self, fn, *arrays):
        return fn(self.model, *arrays)

    def copy(self, tree):
        return {k: _own(v) for k, v in tree.items()}
