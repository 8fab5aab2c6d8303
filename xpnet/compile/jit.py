"""The jax step: ``jax.jit`` of the textbook step as a pure function; ``run`` and ``epoch`` are
one ``lax.scan``."""

from __future__ import annotations

import contextlib
import time
import warnings

import numpy as np

from ..backend import check_same_backend, from_host_like, host_dtype, library
from ..model import Sequential
from ..optimizers import Optimizer
from . import cache
from .base import Step, _check_epoch, _check_run, _dropouts, _flat, _model_key, _no_losses


class JaxStep(Step):
    """``jax.jit`` of the step as a pure function; ``run`` is a ``lax.scan`` of it."""

    compiled = True
    auto = True  # measured faster than eager: --compile auto uses it
    reason = "jax.jit (parameters and optimizer state donated); run() is one lax.scan"

    def __init__(self, model: Sequential, optimizer: Optimizer):
        super().__init__(model, optimizer)
        self.jax = library("jax").import_module()  # the backend seam is the one place that imports it
        self._executables: dict = {}
        self._mask_shapes: dict = {}
        self._lr = self._count = None  # (host value, device array): uploaded only when it changes

    @property
    def dropouts(self) -> list:
        """The model's Dropout layers now (a layer replaced since the last call is seen)."""
        return _dropouts(self.model)

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
        o.bind(m.params)  # another model's optimizer is refused before a slot is made
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

    # ------------------------------------------------------------------ the pure step
    def _pure_step(self, carry, x, t, masks, lr):
        with _traced(self, carry, masks, lr):
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
        with _traced(self, carry, masks, o.lr):
            loss = self.model.loss(x, t, train=True, check=False)
            self.model.backward(input_grad=False)
            out = (loss, self.model.grads, dict(self.model.state.items()))
        return out

    def _pure_apply(self, carry, state, grads, lr):
        """The optimizer's update alone; ``carry``: (parameters, optimizer slots, step count)."""
        params, slots, count = carry
        with _traced(self, (params, state, slots, count), [None] * len(self.dropouts), lr):
            m, o = self.model, self.optimizer
            o.update(m.params, grads)
            new = (dict(m.params.items()), {s: dict(o.state[s]) for s in o.slots}, o.state["step"])
        return new

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
            cache.heal(caught, self.jax.config.jax_compilation_cache_dir, self.notes)
            self.compile_seconds += time.perf_counter() - t0
            self.compiles += 1
            self._executables[key] = exe
        return exe

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
        return self._call("step", x, t, _draw(self, x.shape, None), 1)

    def run(self, xs, ts):
        """``xs.shape[0]`` steps on batches ``xs[k], ts[k]`` in one compiled call; returns the
        losses, shape (K,)."""
        k = _check_run(xs, ts, self._ref)
        if not k:
            return _no_losses(self._ref)
        return self._call("run", xs, ts, _draw(self, xs.shape[1:], k), k)

    def gradient(self, x, t):
        """``(loss, grads)`` of batch ``(x, t)`` in one compiled call: the loss (a 0-d array) and
        a dict of gradients keyed like ``model.params``. The parameters are inputs, not donated
        and not changed; BatchNormalization's running statistics are updated as the eager forward
        updates them, and Dropout masks are drawn as the eager layers draw them. ``apply(grads)``
        then makes the update: together they leave the model and the optimizer as ``step(x, t)``."""
        check_same_backend(x, self._ref, "compiled gradient input")
        check_same_backend(t, self._ref, "compiled gradient targets")
        m = self.model
        args = ((dict(m.params.items()), dict(m.state.items())), x, t, _draw(self, x.shape, None))
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
        o.bind(m.params, items)  # another model's optimizer is refused, as update refuses it
        gs = o.check_grads(items, grads)
        grads = {k: g for (k, _), g in zip(items, gs)}  # any mapping the check accepts, as a dict
        lr = self._device_scalar("_lr", float(o.lr))
        step0 = int(o.state["step"])
        params, state, slots, count = self._carry()
        args = ((params, slots, count), state, grads, lr)
        params, slots, count = self._executable("apply", args, self._pure_apply)(*args)
        self._install((params, state, slots, count))
        o.state["step"] = step0 + 1  # a host int again, as eager keeps it
        self._count = (step0 + 1, count)

    def epoch(self, x, t, order: np.ndarray, batch_size: int, after_step=None):
        """A whole epoch in one compiled call: the batches ``order[i:i + batch_size]`` of
        ``(x, t)`` in turn (the last one smaller if ``batch_size`` does not divide N), gathered
        on the device. Returns ``(losses, mean_loss)``: every step's loss, shape (steps,), and
        their mean weighted by batch size (the epoch's training loss)."""
        order, b = _check_epoch(x, t, order, batch_size, self._ref)
        n = int(x.shape[0])
        k, rest = n // b, n - (n // b) * b
        masks = (_draw(self, (b, *x.shape[1:]), k) if k else [],
                 _draw(self, (rest, *x.shape[1:]), None) if rest else [])
        jnp = self.jax.numpy
        idx = from_host_like(np.asarray(order, dtype=np.int64), self._ref)
        lr = self._device_scalar("_lr", float(self.optimizer.lr))
        step0 = int(self.optimizer.state["step"])
        args = (self._carry(), x, t, idx, masks, lr)

        def pure_epoch(carry, x, t, idx, masks, lr):
            losses, total = [], 0.0
            if k:  # each batch gathered inside the scan's body: no (k, b, ...) copy of the epoch first
                def body(c, batch):
                    sel, m = batch
                    return self._pure_step(c, jnp.take(x, sel, axis=0), jnp.take(t, sel, axis=0), m, lr)

                carry, full = self.jax.lax.scan(body, carry, (jnp.reshape(idx[: k * b], (k, b)), masks[0]))
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
        if after_step is not None:  # one call: looked at once it returns
            after_step()
        return losses, mean

    def evaluate(self, fn, *arrays):
        """``fn(model, *arrays)`` compiled, with the model's current parameters and state as
        inputs (not donated, not changed); for evaluation passes written for eager arrays."""
        m = self.model
        if getattr(m, "eager_metrics", False):  # batches and time steps in Python loops: traced, they would
            return fn(m, *arrays)  # unroll into one program that takes minutes and gigabytes to compile
        args = ((dict(m.params.items()), dict(m.state.items())), *arrays)

        def pure(weights, *arrays):
            carry = (*weights, {s: dict(self.optimizer.state[s]) for s in self.optimizer.slots},
                     self.optimizer.state["step"])
            with _traced(self, carry, [None] * len(self.dropouts), self.optimizer.lr):
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


@contextlib.contextmanager
def _traced(step: JaxStep, carry, masks, lr):
    """Put traced values into the model and optimizer for one trace; put the concrete
    ones back afterwards and drop every tracer the layers kept (no leaked tracers)."""
    m, o = step.model, step.optimizer
    saved = (dict(m.params.items()), dict(m.state.items()), {s: dict(o.state[s]) for s in o.slots},
             o.state["step"])
    saved_lr = o.lr
    saved_masks = [(d.mask, d.freeze) for d in step.dropouts]
    try:
        step._install(carry)
        o.lr = lr
        for d, mask in zip(step.dropouts, masks):
            d.mask, d.freeze = mask, True
        yield
    finally:
        step._install(saved)
        o.lr = saved_lr
        for d, (mask, freeze) in zip(step.dropouts, saved_masks):
            d.mask, d.freeze = mask, freeze
        for obj in [*m.layers, m.loss_layer, o, m, *getattr(m, "helper_layers", ())]:
            _drop_tracers(obj, step.jax.core.Tracer)


def _drop_tracers(obj, Tracer) -> None:
    """Forget every traced value ``obj`` kept from a trace (a leaked tracer fails later calls)."""
    for k, v in list(vars(obj).items()):
        if isinstance(v, Tracer):
            setattr(obj, k, None)
        elif isinstance(v, dict) and k not in ("params", "state"):
            for key, item in list(v.items()):
                inner = item if isinstance(item, tuple) else (item,)
                if any(isinstance(i, Tracer) for i in inner):
                    del v[key]


def _mask_shapes(step: JaxStep, x_shape) -> list:
    """The shape of each Dropout layer's input for a batch of shape ``x_shape`` (traced
    abstractly once per shape; no random numbers drawn)."""
    cache_key = (_model_key(step.model, step.optimizer)[0], x_shape)
    shapes = step._mask_shapes.get(cache_key)
    if shapes is None:
        dropouts = step.dropouts

        def forward(carry, x):
            seen = []
            with _traced(step, carry, [None] * len(step.dropouts), step.optimizer.lr):
                for layer in step.model.layers:
                    if layer in dropouts:
                        seen.append(x)
                    else:
                        x = layer.forward(x, True)
            return seen

        ids = getattr(step.model, "takes_ids", False)  # word ids: the default integer dtype
        x = step.jax.ShapeDtypeStruct(x_shape, step.jax.numpy.asarray(0).dtype if ids else step._ref.dtype)
        shapes = [tuple(s.shape) for s in step.jax.eval_shape(forward, step._carry(), x)]
        step._mask_shapes[cache_key] = shapes
    return shapes

def _draw(step: JaxStep, x_shape, steps: int | None):
    """Host-drawn masks for ``steps`` steps (None: one step), as device arrays."""
    if not step.dropouts:  # nothing to draw, and no key to compute
        return []
    shapes = _mask_shapes(step, tuple(x_shape))
    if not shapes:
        return []
    dt = host_dtype(step._ref.dtype)
    per_step = [[d.draw_mask(shape, dt) for d, shape in zip(step.dropouts, shapes)]
                for _ in range(1 if steps is None else steps)]
    if steps is None:
        return [from_host_like(m, step._ref) for m in per_step[0]]
    return [from_host_like(np.stack([s[i] for s in per_step]), step._ref) for i in range(len(shapes))]
