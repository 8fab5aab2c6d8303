"""CUDA graphs (cupy; torch on CUDA): the eager step captured once per batch shape and replayed."""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ..backend import check_same_backend, from_host_like, host_dtype, is_writeable, namespace
from ..errors import CaptureError, ConfigError
from ..model import Sequential
from ..optimizers import Optimizer
from .base import Step, _dropouts, _model_key


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


class GraphStep(Step):
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
    splits = False  # gradient and apply run eagerly: not taken under MPI

    def __init__(self, model: Sequential, optimizer: Optimizer, graph_kind, reason: str):
        super().__init__(model, optimizer)
        self.reason = reason
        self._graph_kind = graph_kind
        self._model = None  # the model key the graphs and statics were made for (see _model_key)
        self._graphs: dict = {}
        self._statics = None  # (params, layer state, {slot: arrays}): what every graph reads and writes
        self._lr = self._count = None  # [host value, 0-d device array]

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
            o.bind(m.params)  # another model's optimizer is refused now, as update refuses it
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
