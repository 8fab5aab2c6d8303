"""A model is a list of layers and a loss layer; backward walks the layers in reverse.

``model.params`` is a live mapping with the textbook's keys (``W1``, ``b1``, ``W2``...,
``gamma1``...) onto the layers' own parameter dicts, so
``optimizer.update(model.params, model.gradient(x, t))`` changes the weights the layers
use on every backend.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping

import numpy as np

from . import functional as F
from . import gradcheck
from . import layers as L
from .backend import (
    Backend,
    backend_name,
    check_float_dtype,
    check_same_backend,
    dtype_name,
    host_dtype,
    namespace,
    resolve,
    to_numpy,
)
from .checks import as_rng, number_arg, size_arg
from .errors import BackendMismatchError, ConfigError, DTypeError, LabelError, NonFiniteError, ShapeError
from .losses import LOSSES, SoftmaxWithLoss
from .registry import ACTIVATIONS, numbered


class _LayerDicts(MutableMapping):
    """Flat, live view of one kind of per-layer dict (``params``, ``grads`` or ``state``)."""

    def __init__(self, layers, attr: str, keys_of: str | None = None):
        self._attr = attr
        self._where: dict[str, tuple] = {}
        for layer, keys in zip(layers, numbered(getattr(layer, keys_of or attr, {}) for layer in layers)):
            for name, key in keys.items():
                self._where[key] = (layer, name)

    def __getitem__(self, key):
        layer, name = self._where[key]
        return getattr(layer, self._attr)[name]

    def __setitem__(self, key, value):
        if key not in self._where:
            raise KeyError(f"no parameter {key!r}; this model has {list(self._where)}")
        layer, name = self._where[key]
        d = getattr(layer, self._attr)
        if getattr(value, "shape", None) != d[name].shape:  # a tuple compare: cheap per step
            raise ShapeError(f"{key} has shape {tuple(d[name].shape)}; cannot replace it with "
                             f"{type(value).__name__} of shape {getattr(value, 'shape', None)}")
        d[name] = value

    def __delitem__(self, key):
        raise TypeError("a model's parameters cannot be deleted")

    def __iter__(self):
        return iter(self._where)

    def items(self):
        """``(key, array)`` pairs, in layer order (a list: one pass, no per-key lookups)."""
        attr = self._attr
        return [(k, getattr(layer, attr)[name]) for k, (layer, name) in self._where.items()]

    def values(self):
        return [v for _, v in self.items()]

    def __len__(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: shape {tuple(v.shape)}" for k, v in self.items()) + "}"


def _is_layer(obj) -> bool:
    return (callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None))
            and isinstance(getattr(obj, "params", None), dict) and isinstance(getattr(obj, "grads", None), dict))


def _checked_views(layers: list) -> tuple:
    """``(params, state, grads)`` views over ``layers``, once each layer is a layer, appears once,
    and all parameters and state share one library, device and dtype."""
    seen: dict[int, int] = {}
    for i, layer in enumerate(layers):
        if not _is_layer(layer):
            raise ConfigError(f"layers[{i}] is a {type(layer).__name__}, not a layer: a layer has "
                              f"forward(x, train), backward(dout) and params/grads dicts "
                              f"(e.g. xpnet.Affine, xpnet.ReLU)")
        j = seen.setdefault(id(layer), i)
        if j != i:
            raise ConfigError(f"layers[{j}] and layers[{i}] are the same {type(layer).__name__} object; "
                              f"a layer keeps the arrays of its last forward pass for backward, so "
                              f"it can appear only once: create a second layer")
    views = (_LayerDicts(layers, "params"), _LayerDicts(layers, "state"),
             _LayerDicts(layers, "grads", keys_of="params"))
    ref = None
    for kind, mapping in (("parameter", views[0]), ("state array", views[1])):
        for key, a in mapping.items():
            L.check_param(a, f"{kind} {key}", like=ref)
            ref = a if ref is None else ref
    return views


def describe_layers(layers) -> list[dict]:
    """Each layer's type, config and parameter shapes, in order: what a checkpoint describes."""
    return [{"type": type(layer).__name__, "config": layer.config(),
             "params": {k: list(v.shape) for k, v in layer.params.items()}} for layer in layers]


TRAINABLE = ("params", "grads", "state", "layers", "loss_layer", "loss", "backward", "reference_array")


def check_trainable(model, who: str) -> None:
    """Refuse what the trainer and the compiled steps cannot train: a model is an
    :class:`Sequential` or an object with the same training interface (``TRAINABLE``: the
    sequence models of :mod:`xpnet.seq2seq` and :mod:`xpnet.lm`), with parameters."""
    missing = [name for name in TRAINABLE  # looked up without running a property (grads before a backward)
               if not hasattr(type(model), name) and name not in getattr(model, "__dict__", {})]
    if missing or not model.params:
        what = f"it lacks {', '.join(missing)}" if missing else "it has no parameters"
        raise ConfigError(f"{who} needs a model with parameters (an xpnet.Sequential such as xpnet.mlp(...), or a "
                          f"sequence model such as xpnet.seq2seq.PeekySeq2seq); got {type(model).__name__}: {what}")


class Sequential:
    """``layers`` applied in order, then ``loss`` (Softmax-with-Loss by default).

    Each layer object appears once (a layer keeps the arrays of its last forward pass);
    every parameter shares one library, device and float dtype. A Sequential with no
    layers is a loss on its own (``loss``, ``gradient_check`` take the scores as ``x``);
    ``predict`` and training need layers.

    ``input_shape`` is one sample's shape when the model takes images, e.g. ``(1, 28, 28)``
    for a convolutional network (None for flat features): the input checks hold batches to it,
    :meth:`reshape_input` turns flat features into it, and checkpoints record it.
    """

    def __init__(self, layers, loss=None, input_shape=None):
        if _is_layer(layers) or isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
            raise ConfigError(f"Sequential takes a list of layers, got {type(layers).__name__}; "
                              f"e.g. Sequential([Affine(W1, b1), ReLU(), Affine(W2, b2)])")
        if loss is not None and not (callable(getattr(loss, "forward", None))
                                     and callable(getattr(loss, "backward", None))):
            raise ConfigError(f"loss must be a loss layer (e.g. xpnet.SoftmaxWithLoss()), got {loss!r}")
        self.layers = list(layers)
        self.loss_layer = loss if loss is not None else SoftmaxWithLoss()
        self.input_shape = _shape_arg(input_shape)
        self._views = None
        self._layer_views()

    def _layer_views(self) -> tuple:
        """``(layer ids, params, state, grads)``: the live views over the current layers, made
        again (and the layers checked again) when ``self.layers`` changed since the last call, so
        that a layer replaced or added is the one ``params`` names and an optimizer updates."""
        ids = tuple(map(id, self.layers))  # the views keep the layers alive: ids stay unique
        if self._views is None or self._views[0] != ids:
            self._views = (ids, *_checked_views(self.layers))
        return self._views

    @property
    def params(self):
        """The parameters, a live mapping ``{"W1": layers[0].params["W"], ...}``."""
        return self._layer_views()[1]

    @property
    def state(self):
        """Layer state that is not trained but saved (BatchNormalization's running statistics)."""
        return self._layer_views()[2]

    @property
    def _grads(self):
        return self._layer_views()[3]

    # ------------------------------------------------------------------ what the layers fix
    @property
    def reference_array(self):
        """The first parameter, or None: its library, device and dtype are the model's."""
        for key in self.params:
            return self.params[key]
        return None

    @property
    def dtype(self):
        ref = self.reference_array
        return None if ref is None else ref.dtype

    @property
    def first_param_layer(self):
        """The first layer that holds parameters (the one that takes the input's features), or None."""
        return next((layer for layer in self.layers if layer.params), None)

    def weight_matrices(self) -> list:
        """The 2-D ``W`` of every layer that has one (Affine, MatMul), in layer order."""
        return [layer.params["W"] for layer in self.layers if "W" in layer.params and layer.params["W"].ndim == 2]

    @property
    def in_features(self) -> int | None:
        """Features per sample: the size of ``input_shape``, else the rows of the first layer's weight
        matrix (None when neither says)."""
        if self.input_shape is not None:
            return math.prod(self.input_shape)
        w = next((layer.params["W"] for layer in self.layers if "W" in layer.params), None)
        return int(w.shape[0]) if w is not None and w.ndim == 2 else None

    def reshape_input(self, x):
        """``x`` of shape (N, features) or (N, *input_shape) as (N, *input_shape), for a model that takes
        images (a host or device array); other models get ``x`` back. Any other shape: ShapeError."""
        shape = self.input_shape
        if shape is None or (x.ndim >= 2 and tuple(x.shape[1:]) == shape):
            return x
        if x.ndim == 2 and x.shape[1] == math.prod(shape):
            return namespace(x).reshape(x, (x.shape[0], *shape))
        raise ShapeError(f"this model takes images of shape {shape} (one sample): expected a batch of shape "
                         f"(N, {', '.join(map(str, shape))}) or flat features (N, {math.prod(shape)}), got shape "
                         f"{tuple(x.shape)}")

    @property
    def out_features(self) -> int | None:
        """Outputs per sample (classes): the columns of the last weight matrix (None without one)."""
        weights = self.weight_matrices()
        return int(weights[-1].shape[1]) if weights else None

    # ------------------------------------------------------------------ checks

    def check_input(self, x, where: str = "model input"):
        """Raise a clear error for arrays of the wrong backend, device, dtype or shape, for
        arrays that track autograd gradients, and :class:`NonFiniteError` for NaN or inf (an
        error, not a warning). Float inputs of another precision are cast to the model's
        dtype; values that the cast would turn into inf (1e39 into float32) are refused."""
        F.require_array(x, where)
        if getattr(x, "requires_grad", False):  # e.g. a torch tensor: autograd would record every step
            raise BackendMismatchError(f"{where} tracks gradients (requires_grad=True); xpnet computes "
                                       f"its own gradients: pass x.detach()")
        ref = self.reference_array
        if ref is not None:
            first = self.first_param_layer
            check_same_backend(x, ref, f"{where} of {type(first).__name__} (layer {self.layers.index(first)})")
        xp = namespace(x)
        want = x.dtype if ref is None else ref.dtype
        if not xp.isdtype(x.dtype, "real floating"):
            name = "float32" if ref is None else dtype_name(want)
            raise DTypeError(f"{where}: expected floating-point features ({name}), got "
                             f"dtype {dtype_name(x.dtype)}; convert with xp.astype(x, xp.{name})")
        check_float_dtype(x.dtype, where, backend_name(x))  # float16, bfloat16: a DTypeError
        check_float_dtype(want, f"{where}: the model's parameters", backend_name(x))
        if x.ndim < 2 or x.shape[0] == 0:
            raise ShapeError(f"{where}: expected a non-empty batch of shape (N, features...), "
                             f"got shape {tuple(x.shape)}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            shape = self.input_shape
            raise ShapeError(f"{where}: this model takes images of shape (N, {', '.join(map(str, shape))}), got "
                             f"shape {tuple(x.shape)}; flat features (N, {math.prod(shape)}) are reshaped by "
                             f"model.reshape_input(x)")
        narrowing = host_dtype(x.dtype).itemsize > host_dtype(want).itemsize
        limit = float(xp.finfo(want).max)
        ok = xp.all(xp.abs(x) <= limit) if narrowing else xp.all(xp.isfinite(x))  # False for NaN
        if not bool(to_numpy(ok)):  # one sync per call; the trainer checks once
            bad = int(to_numpy(xp.sum(xp.astype(~xp.isfinite(x), xp.int32))))
            if bad:
                raise NonFiniteError(f"{where}: {bad} NaN or inf value(s) in the input of shape "
                                     f"{tuple(x.shape)}; clean or impute them before training")
            big = float(to_numpy(xp.max(xp.abs(x))))
            raise NonFiniteError(f"{where}: values up to {big:.4g} overflow the model's "
                                 f"{dtype_name(want)} (max ~{limit:.3g}): the cast would make them inf; "
                                 f"scale the features down, or build the model in float64")
        return x if x.dtype == want else xp.astype(x, want)

    # ------------------------------------------------------------------ passes
    def predict(self, x, train: bool = False, check: bool = True):
        """Scores (the last layer's output, before the loss) for a batch ``x``."""
        if not self.layers:
            raise ConfigError("this Sequential has no layers, so it has nothing to predict with; "
                              "give it layers, e.g. xpnet.mlp([784, 100, 10])")
        return self._forward(x, train, check)

    def _forward(self, x, train: bool, check: bool):
        if check:
            x = self.check_input(x)
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def loss(self, x, t, train: bool = True, check: bool = True):
        """Mean loss of batch ``x`` with targets ``t`` (a 0-d array; no host sync unless
        ``check``). ``check=True`` validates the input and the targets (device syncs);
        ``check=False`` skips both, for data validated once (``loss_layer.forward(.., check)``)."""
        if check:
            t = self._check_targets(t, x)
        return self.loss_layer.forward(self._forward(x, train, check), t, check=check)

    def _check_targets(self, t, x, where: str = "targets given to the loss"):
        F.require_array(x, "model input")
        F.require_array(t, where)
        ref = self.reference_array
        check_same_backend(t, x if ref is None else ref, where)
        if t.ndim == 0 or x.ndim == 0 or t.shape[0] != x.shape[0]:
            raise LabelError(f"{t.shape[0] if t.ndim else 'a single (0-d)'} labels given for a batch "
                             f"of {x.shape[0] if x.ndim else '?'} samples; expected one per sample")
        return t

    def backward(self, dout=1.0, input_grad: bool = True):
        """Backpropagate from the loss; fills every layer's ``grads``; returns d loss / d x.

        ``input_grad=False`` returns None and lets the first layer skip computing d loss / d x
        (for Affine a third of the step's matmuls), as ``gradient`` does.
        """
        d = self.loss_layer.backward(dout)
        for layer in reversed(self.layers[1:]):
            d = layer.backward(d)
        if not self.layers:
            return d if input_grad else None
        if input_grad:
            return self.layers[0].backward(d)
        self.layers[0].backward_params(d)
        return None

    @property
    def grads(self) -> dict:
        """The gradients of the last ``backward``, keyed like ``params``."""
        return dict(self._grads.items())

    def gradient(self, x, t, check: bool = True) -> dict:
        """Backprop gradients of the loss, a dict with the keys of ``params``."""
        self.loss(x, t, train=True, check=check)
        self.backward(input_grad=False)
        return dict(self._grads.items())

    def accuracy(self, x, t, batch_size: int | None = None, check: bool = True) -> float:
        """Fraction of samples classified right, in evaluation mode (a Python float).

        Labels as :func:`xpnet.accuracy` takes them: integer labels (N,) or one-hot rows for
        C >= 2 outputs; for ONE output (binary logits, ``loss="sigmoid"``) the prediction is
        ``score > 0`` and the labels are 0/1 of shape (N,) or (N, 1). ``check=True`` runs
        the model's input checks and validates the labels once (a few device syncs);
        ``batch_size`` (an int >= 1) bounds the memory of one forward pass.
        """
        if batch_size is not None:
            batch_size = size_arg("accuracy batch_size", batch_size)
        if not self.layers:
            return self.predict(x)  # the error for a model with no layers
        if check:
            x = self.check_input(x, "accuracy input")
            t = self._check_targets(t, x, "accuracy labels")
        xp = namespace(x)
        n = x.shape[0]
        step = n if batch_size is None else batch_size
        hits = None
        for i in range(0, n, step):
            stop = min(i + step, n)  # strict: slice ends may not pass the end
            xb, tb = x[i:stop, ...], t[i:stop, ...]
            scores = self._forward(xb, False, False)
            if check and i == 0:  # all the labels, once, against the output width
                if scores.shape[1] == 1:
                    F.check_binary_labels(t, n, where="accuracy labels", xp=xp)
                else:
                    F.check_labels(t, scores.shape[1], n, where="accuracy labels", xp=xp)
            h = F.accuracy(scores, tb, check=False, xp=xp) * xb.shape[0]
            hits = h if hits is None else hits + h
        return float(to_numpy(hits)) / n  # one sync

    # ------------------------------------------------------------------ numerical gradient
    def numerical_gradient(self, x, t, eps: float = 1e-5, dtype: str = "float64", wrt_input: bool = False) -> dict:
        """Central differences ``(L(p + eps) - L(p - eps)) / 2 eps`` for every parameter,
        computed in ``dtype`` (float64 by default) on the model's own device.

        Works on every backend: each perturbation is an array built on the device, and
        only the scalar loss comes back to the host. Parameters are restored afterwards.
        With ``wrt_input=True`` the result also has key ``"x"``: d loss / d x.
        """
        return gradcheck.numerical_gradient(self, x, t, eps, dtype, wrt_input)

    def gradient_check(self, x, t, eps: float = 1e-5, dtype: str = "float64", wrt_input: bool = True,
                       floor: float | None = None) -> dict:
        """Worst relative error between backprop and numerical gradients, per parameter.

        Both are computed in ``dtype`` (float64 by default). The error of one element is
        ``|a - b| / max(|a| + |b|, floor)``: relative for gradients larger than ``floor``,
        absolute (scaled by ``1/floor``) for ones that are really zero, where central
        differences only see rounding noise (a bias just before a BatchNormalization).
        ``floor`` defaults to 1e-5 in float64 and 1e-3 in float32.
        In float64, 1e-6 or less means the backward is right; a wrong formula gives 1e-2 or more.
        """
        return gradcheck.gradient_check(self, x, t, eps, dtype, wrt_input, floor)

    # ------------------------------------------------------------------ description
    def describe(self) -> list[dict]:
        """The layer list with each layer's type, config and parameter shapes (for checkpoints)."""
        return describe_layers(self.layers)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner},\n  loss={type(self.loss_layer).__name__})"



def _shape_arg(shape) -> tuple | None:
    """None, or one sample's shape as a tuple of ints >= 1."""
    if shape is None:
        return None
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise ConfigError(f"input_shape must be a tuple of sizes, e.g. (1, 28, 28), got {shape!r}")
    shape = tuple(size_arg("input_shape entry", s) for s in shape)
    if not shape:
        raise ConfigError("input_shape must name at least one size, e.g. (1, 28, 28)")
    return shape


# ---------------------------------------------------------------------- builders
def mlp(sizes, activation: str = "relu", init=None, batchnorm: bool = False, dropout: float = 0.0,
        loss: str = "softmax", seed=0, backend: Backend | str | None = None,
        device: str | None = None, dtype: str | None = None) -> Sequential:
    """A multi-layer perceptron: ``sizes = [inputs, hidden..., outputs]``.

    Each hidden layer is Affine -> (BatchNormalization) -> activation -> (Dropout).
    ``init`` defaults to He for ReLU and Xavier for sigmoid/tanh. Weights are drawn on the
    host from ``numpy.random.default_rng(seed)``, so the same seed gives the same model on
    every backend. ``backend`` is a name, or a resolved :class:`Backend`; with a Backend,
    ``device`` and ``dtype`` may only repeat its own (a conflict is refused). A model whose
    parameters would not fit in this machine's memory is refused before anything is drawn.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ConfigError(f"mlp sizes must be a list of integers [inputs, hidden..., outputs], got {sizes!r}")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ConfigError(f"mlp sizes must be at least [inputs, outputs], all >= 1; got {sizes}")
    sizes = [size_arg(f"mlp sizes[{i}]", s) for i, s in enumerate(sizes)]
    act = ACTIVATIONS.get(str(activation).lower())
    if act is None:
        raise ConfigError(f"unknown activation {activation!r}; valid activations: {', '.join(ACTIVATIONS)}")
    dropout = number_arg("mlp dropout", dropout)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"mlp dropout must be in [0, 1), got {dropout}")
    if str(loss).lower() not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")
    be = _mlp_backend(backend, device, dtype)
    init = init if init is not None else ("he" if act is L.ReLU else "xavier")
    rng = as_rng(seed)
    pairs = list(zip(sizes[:-1], sizes[1:]))
    L.check_fits(sum(i * o + o for i, o in pairs) * host_dtype(be.dtype).itemsize
                 + max(i * o for i, o in pairs) * 8, f"mlp({sizes}) in {be.dtype_name}")
    layers: list = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(L.Affine.create(n_in, n_out, init, rng, be))
        if i < len(sizes) - 2:
            if batchnorm:
                layers.append(L.BatchNormalization.create(n_out, be))
            layers.append(act())
            if dropout:
                layers.append(L.Dropout(dropout, rng=rng.integers(2**31)))
    return Sequential(layers, LOSSES[str(loss).lower()]())


def _mlp_backend(backend, device, dtype) -> Backend:
    if not isinstance(backend, Backend):
        if backend is not None and not isinstance(backend, str):
            raise ConfigError(f"backend must be a name (e.g. 'torch') or an xpnet Backend, got {backend!r}")
        return resolve(backend, device, dtype)
    if dtype is not None and dtype != backend.dtype_name:
        raise ConfigError(f"dtype={dtype!r} conflicts with the backend given ({backend}); pass one of "
                          f"them: backend=xpnet.get_backend({backend.name!r}, dtype={dtype!r})")
    if device is not None and resolve(backend.name, device, backend.dtype_name).device != backend.device:
        raise ConfigError(f"device={device!r} conflicts with the backend given ({backend}); pass one of "
                          f"them: backend=xpnet.get_backend({backend.name!r}, device={device!r})")
    return backend


def check_finite(value: float, where: str) -> float:
    """Raise :class:`NonFiniteError` for NaN or inf (a diverging loss)."""
    if not np.isfinite(value):
        raise NonFiniteError(f"{where} is {value}; lower the learning rate or check the inputs")
    return value
