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
  ``compile_step`` and ``compile="on"`` use it. Its ``gradient``/``apply`` run eagerly
  (``step.splits`` is False), so under MPI the trainer keeps the eager step.
- every other backend (numpy, torch on the CPU, dask, array_api_strict): no compiler is used
  here; the eager step is returned with ``step.compiled == False`` and ``step.reason`` saying why
  (``compile_step`` warns once unless ``warn=False``).

Dropout masks are drawn on the host from each layer's seeded generator, in the order the eager
layers draw them, and passed in as inputs: they change every step and are the same numbers as
eager for a seed. BatchNormalization's running statistics are part of the carried state.

What compiles (jax): the first call for each batch shape (an epoch's smaller last batch is one
more), each new number of steps given to ``run``, a new dtype, a change of any hyper-parameter
other than the learning rate (each optimizer lists them in ``hyper``), and any change to the
model between calls (a layer replaced or added, a layer's settings, the loss layer): see
``base._model_key``. A new learning rate does not recompile: it is an input. ``step.compiles`` counts compilations and
``step.compile_seconds`` sums their time.

Compiled executables can be kept on disk between processes with :func:`use_cache` (``xpnet
train`` does, in ``~/.cache/xpnet/jax`` unless ``XPNET_COMPILE_CACHE`` says otherwise): a later
run with the same model, batch shapes and jax version loads them instead of compiling. The
cache is jax's own persistent compilation cache, keyed by the compiled program itself, so a
changed model or jax version can never pick up a stale executable.
"""

from __future__ import annotations

import warnings

from ..backend import LIBRARIES, backend_name, library, library_of
from ..errors import ConfigError
from ..model import Sequential, check_trainable
from ..optimizers import Optimizer
from .base import Step, _model_key  # noqa: F401 (part of this package's API)
from .cache import CACHE_ENV, CACHE_OFF, cache_dir_default, cache_setting, use_cache  # noqa: F401
from .eager import EagerStep
from .graph import GraphStep
from .jit import JaxStep

# what --compile does on each backend (``xpnet info`` prints it)
BACKEND_SUMMARY = {name: lib.compile_summary for name, lib in sorted(LIBRARIES.items(), key=lambda kv: not kv[1].jit)
                   if lib.compile_summary}  # the compiler xpnet uses by default first


def compile_step(model: Sequential, optimizer: Optimizer, warn: bool = True):
    """A training step for ``model`` and ``optimizer``, compiled where the backend allows it.

    Returns an object ``step`` with ``step(x, t) -> loss``, ``step.run(xs, ts) -> losses``,
    ``step.compiled`` and ``step.reason``. On a backend without a compiler the eager step is
    returned (with a warning unless ``warn=False``), never an error.
    """
    check_trainable(model, "compile_step")
    if not isinstance(optimizer, Optimizer):
        raise ConfigError(f"compile_step needs an xpnet optimizer (e.g. xpnet.SGD(lr=0.1)), got "
                          f"{type(optimizer).__name__}")
    ref = model.reference_array
    name, lib = backend_name(ref), library_of(ref)
    if lib.jit:
        return JaxStep(model, optimizer)
    kind = _graph_kind(name, ref)
    if kind is not None:
        return GraphStep(model, optimizer, kind, f"CUDA graph ({name}): the step captured once per batch shape, "
                                                 "then replayed")
    reason = f"no compiler is used for {name} arrays: the step runs eagerly{lib.eager_note}"
    if warn:
        warnings.warn(f"xpnet.compile_step: {reason}", RuntimeWarning, stacklevel=2)
    return EagerStep(model, optimizer, reason)


def _graph_kind(name: str, ref):
    """The CUDA-graph class for arrays of backend ``name`` like ``ref``, or None (the library says)."""
    return library(name).graph_class(ref)


COMPILE_CHOICES = ("auto", "on", "off")


def make_step(model: Sequential, optimizer: Optimizer, mode: str, distributed: bool = False) -> Step:
    """The step the trainer uses for ``mode`` (``auto``, ``on`` or ``off``): ``auto`` takes a
    compiled step only where it was measured faster (jax), ``on`` takes any (an error where
    there is none), ``off`` the eager one. ``distributed``: under MPI, where a step must be split
    into compiled halves around the allreduce (``splits``)."""
    if mode not in COMPILE_CHOICES:
        raise ConfigError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {mode!r}")
    if mode == "off":
        return EagerStep(model, optimizer, "--compile off: the step runs eagerly")
    step = compile_step(model, optimizer, warn=False)
    if step.compiled and distributed and not step.splits:
        if mode == "on":
            raise ConfigError(f"compile='on' (--compile on) asked for under MPI, but the {step.reason.split(':')[0]} "
                              "step is not split around the allreduce yet; use --compile off (or auto) with mpiexec")
        return EagerStep(model, optimizer, f"under MPI the {step.reason.split(':')[0]} step is not split yet")
    if step.compiled and (step.auto or mode == "on"):
        return step
    if mode == "on":
        raise ConfigError(f"compile='on' (--compile on) asked for, but {step.reason}; xpnet compiles the step on "
                          "jax, and captures it as a CUDA graph on cupy and torch on CUDA. Use --compile auto "
                          "(compile where possible) or --compile off")
    return step if not step.compiled else EagerStep(model, optimizer, f"{step.reason}; --compile auto keeps it "
                                                                      "eager until measured on a GPU")
