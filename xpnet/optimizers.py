"""Optimizers in the textbook's form: ``optimizer.update(params, grads)``.

Each optimizer computes, for one parameter, the step to subtract (``delta``); the base
class applies it: in place where the array is writeable (numpy, torch, cupy), otherwise by
storing the new array back into ``params`` (jax and dask arrays cannot change in place,
and ``p -= d`` there would only rebind a local name). Either way the layers see it.

State (velocities, squared-gradient sums, step count) lives in ``self.state``, plain
dicts of arrays, so it can be saved, restored and compared. That state belongs to one
model: the first ``update`` binds the optimizer to its ``params`` mapping, and another
model's parameters are refused. Gradients are checked (same keys, array type, shape and
dtype as the parameters) before any parameter changes.
"""

from __future__ import annotations

import inspect
import weakref

from .backend import constant, dtype_name, is_writeable, materialize, materialize_all, namespace, sub_scaled_
from .checks import fraction_arg, non_negative_arg, positive_arg
from .errors import BackendMismatchError, ConfigError, DTypeError, ShapeError
from .layers import LIVE_LAYERS, check_param


class Optimizer:
    """Base class: ``update`` walks the parameters; subclasses define ``delta``.

    ``hyper`` names every hyper-parameter the class has (each an attribute of the same name):
    :meth:`config` reports them all, so checkpoints save them and a compiled step recompiles
    when one changes; a subclass with more lists them all here and nowhere else."""

    slots: tuple[str, ...] = ()  # names of the per-parameter state arrays
    hyper: tuple[str, ...] = ("lr", "weight_decay", "clip_norm")

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, clip_norm: float = 0.0):
        self.lr = positive_arg("learning rate (lr)", lr)
        self.weight_decay = non_negative_arg("weight_decay", weight_decay)
        self.clip_norm = non_negative_arg("clip_norm", clip_norm)  # 0: no clipping
        self.state: dict = {"step": 0, **{s: {} for s in self.slots}}
        self._work: dict = {}  # scratch buffers of in-place updates (not state: never saved)
        self._inplace: dict = {}  # key -> (the array seen, whether it is writeable): asked once
        self._params = None  # the params mapping this optimizer's state belongs to
        self._holders: dict = {}  # key -> [(layer ref, name)]: layers holding a user's array (see bind)

    def update(self, params, grads) -> None:
        """Change every ``params[key]`` by the step computed from ``grads[key]``."""
        if params is not self._params and not hasattr(params, "items"):
            raise ConfigError(f"params must be a dict of arrays (model.params), got {type(params).__name__}")
        items = list(params.items())
        if params is not self._params:
            self.bind(params, items)
        gs = self.check_grads(items, grads)  # all checked before any parameter changes
        self.state["step"] += 1
        xp = namespace(items[0][1])  # once per step: one model, one backend
        if self.clip_norm:  # the book's clipping by global norm, before the step
            gs = clip_grads(gs, self.clip_norm)
        gs = materialize_all(gs)  # a lazy backend computes the step's shared graph once, not once a parameter
        for (key, p), g in zip(items, gs):
            if self.weight_decay:
                g = g + self.weight_decay * p
            seen = self._inplace.get(key)
            if seen is None or seen[0] is not p:
                seen = self._inplace[key] = (p, is_writeable(p))
            if seen[1]:
                self.update_inplace(key, p, g, xp)
            else:
                params[key] = new = materialize(p - self.delta(key, p, g, xp))
                for ref, name in self._holders.get(key, ()):  # the layers built from the user's arrays
                    layer = ref()
                    if layer is not None and layer.params.get(name) is p:
                        layer.params[name] = new

    def bind(self, params, items=None) -> None:
        """Tie the state to ``params`` (the first ``update`` does): refuse another model's (the
        state would be shared). A compiled step binds before it makes the optimizer's slots."""
        if params is self._params:
            return
        items = list(params.items()) if items is None else items
        if not items:
            raise ConfigError("no parameters to update: the model has no layers with weights "
                              "(add e.g. xpnet.Affine layers)")
        if self._params is not None:
            old = self._params
            if len(old) != len(items) or any(k not in old or old[k] is not p for k, p in items):
                raise ConfigError(f"this {type(self).__name__} already updates another model's parameters "
                                  f"({', '.join(old)}); its state (step count, per-parameter slots) "
                                  f"belongs to that model. Create one optimizer per model")
        for key, p in items:
            check_param(p, f"params[{key!r}]", like=items[0][1])
        self._holders = _holders(params, items)
        shapes = {k: tuple(p.shape) for k, p in items}
        for slot in self.slots:
            for k, v in self.state[slot].items():
                if shapes.get(k) != tuple(v.shape):
                    raise ConfigError(f"optimizer state {slot}[{k!r}] has shape {tuple(v.shape)} but the "
                                      f"parameters have {shapes.get(k, 'no such key')}: this state is "
                                      f"another model's; create a new optimizer")
        self._params = params

    def check_grads(self, items, grads) -> list:
        """``grads`` (keyed like the ``(key, parameter)`` pairs ``items``) as a list in that order,
        each checked against its parameter: keys, array type, shape and dtype."""
        if not hasattr(grads, "keys") or not hasattr(grads, "__getitem__"):
            raise ConfigError(f"grads must be a dict keyed like params, got {type(grads).__name__}")
        missing = [k for k, _ in items if k not in grads]
        if missing or len(grads) != len(items):
            extra = [k for k in grads.keys() if k not in dict(items)]
            raise ConfigError(f"grads do not match params: missing {missing}, unexpected {extra}; "
                              f"expected exactly the keys {[k for k, _ in items]}")
        gs = [grads[k] for k, _ in items]
        for (key, p), g in zip(items, gs):
            if type(g) is not type(p):
                raise BackendMismatchError(f"grads[{key!r}] is a {type(g).__name__}; expected an array "
                                           f"like params[{key!r}] ({type(p).__name__})")
            if g.shape != p.shape:
                raise ShapeError(f"grads[{key!r}] has shape {tuple(g.shape)} but params[{key!r}] has "
                                 f"{tuple(p.shape)}; a gradient has its parameter's shape (no broadcasting)")
            if g.dtype != p.dtype:
                raise DTypeError(f"grads[{key!r}] has dtype {dtype_name(g.dtype)} but params[{key!r}] has "
                                 f"{dtype_name(p.dtype)}; cast the gradient first")
        return gs

    def delta(self, key, p, g, xp):
        raise NotImplementedError

    def update_inplace(self, key, p, g, xp) -> None:
        """``p -= delta`` on a writeable array; an optimizer with a fused form overrides it."""
        p -= self.delta(key, p, g, xp)

    def _slot(self, name: str, key, like, xp):
        s = self.state[name]
        if key not in s:
            s[key] = xp.zeros_like(like)
        return s[key]

    def _set(self, name: str, key, value):
        self.state[name][key] = materialize(value)
        return self.state[name][key]

    def config(self) -> dict:
        """Every hyper-parameter (``hyper``) by name: what a checkpoint saves and what a
        compiled step's cache key holds."""
        return {name: getattr(self, name) for name in self.hyper if name != "clip_norm" or self.clip_norm}


def _holders(params, items) -> dict:
    """For a dict of the user's own (the textbook's ``net.params``, whose arrays the user also
    gave to layers: ``Affine(params["W1"], params["b1"])``), the layers holding each array, by
    key: ``{key: [(weak reference to the layer, its parameter name)]}``. An array that cannot
    change in place (jax, dask) is replaced by a new one in ``params`` and in those layers, so the
    layers see every update, as they do on numpy and torch. A model's own ``params`` (a live view
    onto its layers) needs none."""
    if not isinstance(params, dict):
        return {}
    by_id = {id(p): k for k, p in items}
    found: dict = {}
    for layer in list(LIVE_LAYERS):
        layer_params = getattr(layer, "params", None)
        if not isinstance(layer_params, dict) or layer_params is params:
            continue
        for name, a in layer_params.items():
            key = by_id.get(id(a))
            if key is not None:
                found.setdefault(key, []).append((weakref.ref(layer), name))
    return found


class SGD(Optimizer):
    """``p -= lr * g``."""

    def delta(self, key, p, g, xp):
        return self.lr * g

    def update_inplace(self, key, p, g, xp) -> None:
        # the same p -= lr * g, reusing one scratch buffer per parameter (see sub_scaled_)
        self._work[key] = sub_scaled_(p, g, self.lr, self._work.get(key))


class Momentum(Optimizer):
    """``v = momentum * v - lr * g``; ``p += v``."""

    slots = ("v",)
    hyper = ("lr", "momentum", "weight_decay", "clip_norm")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0, clip_norm: float = 0.0):
        self.momentum = fraction_arg("momentum", momentum)
        super().__init__(lr, weight_decay, clip_norm)

    def delta(self, key, p, g, xp):
        v = self._set("v", key, self.momentum * self._slot("v", key, p, xp) - self.lr * g)
        return -v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the textbook's form:
    ``v = momentum * v - lr * g``; ``p += momentum^2 * v - (1 + momentum) * lr * g``."""

    def delta(self, key, p, g, xp):
        m = self.momentum
        v = self._set("v", key, m * self._slot("v", key, p, xp) - self.lr * g)
        return (1.0 + m) * self.lr * g - (m * m) * v


class AdaGrad(Optimizer):
    """``h += g * g``; ``p -= lr * g / (sqrt(h) + eps)``."""

    slots = ("h",)
    hyper = ("lr", "eps", "weight_decay", "clip_norm")

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, weight_decay: float = 0.0, clip_norm: float = 0.0):
        super().__init__(lr, weight_decay, clip_norm)
        self.eps = positive_arg("eps", eps)

    def delta(self, key, p, g, xp):
        h = self._set("h", key, self._slot("h", key, p, xp) + g * g)
        return self.lr * g / (xp.sqrt(h) + self.eps)


class RMSprop(Optimizer):
    """``h = decay * h + (1 - decay) * g * g``; ``p -= lr * g / (sqrt(h) + eps)``."""

    slots = ("h",)
    hyper = ("lr", "decay_rate", "eps", "weight_decay", "clip_norm")

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, eps: float = 1e-7, weight_decay: float = 0.0,
                 clip_norm: float = 0.0):
        super().__init__(lr, weight_decay, clip_norm)
        self.decay_rate = fraction_arg("decay_rate", decay_rate)
        self.eps = positive_arg("eps", eps)

    def delta(self, key, p, g, xp):
        r = self.decay_rate
        h = self._set("h", key, r * self._slot("h", key, p, xp) + (1.0 - r) * (g * g))
        return self.lr * g / (xp.sqrt(h) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction folded into the rate:
    ``m += (1 - b1)(g - m)``; ``v += (1 - b2)(g^2 - v)``;
    ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``."""

    slots = ("m", "v")
    hyper = ("lr", "beta1", "beta2", "eps", "weight_decay", "clip_norm")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-7, weight_decay: float = 0.0, clip_norm: float = 0.0):
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = fraction_arg("beta1", beta1)
        self.beta2 = fraction_arg("beta2", beta2)
        self.eps = positive_arg("eps", eps)

    def delta(self, key, p, g, xp):
        b1, b2, t = self.beta1, self.beta2, self.state["step"]
        m0, v0 = self._slot("m", key, p, xp), self._slot("v", key, p, xp)
        m = self._set("m", key, m0 + (1.0 - b1) * (g - m0))
        v = self._set("v", key, v0 + (1.0 - b2) * (g * g - v0))
        lr_t = self.lr * (1.0 - b2**t) ** 0.5 / (1.0 - b1**t)  # t may be a traced count
        return lr_t * m / (xp.sqrt(v) + self.eps)


def clip_grads(grads, max_norm: float):
    """The book's gradient clipping by global norm: with ``norm = sqrt(sum of every g^2)`` over
    all gradients, each is multiplied by ``min(1, max_norm / (norm + 1e-6))``.

    ``grads`` is a dict (``model.grads``, a layer's ``grads``) or a list (the book's); each entry
    is replaced by the scaled array and ``grads`` is returned (the same way on every backend:
    jax and dask arrays cannot be scaled in place). Pass that same ``grads`` to the optimizer.
    The norm stays on the device: no host sync, so it also runs inside a compiled step.
    """
    max_norm = positive_arg("max_norm", max_norm)
    if hasattr(grads, "items"):
        items = list(grads.items())
    elif isinstance(grads, list):
        items = list(enumerate(grads))
    else:
        raise ConfigError(f"clip_grads takes a dict or a list of gradient arrays, got {type(grads).__name__}")
    if not items:
        return grads
    xp = namespace(items[0][1])
    total = None
    for _, g in items:
        s = xp.sum(g * g)
        total = s if total is None else total + s
    rate = max_norm / (xp.sqrt(total) + 1e-6)
    scale = xp.minimum(rate, constant(1.0, rate))
    for key, g in items:
        grads[key] = g * scale
    return grads


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def get_optimizer(name: str, lr: float | None = None, **kwargs) -> Optimizer:
    """An optimizer by name (``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop``, ``adam``)."""
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    if lr is not None:
        kwargs["lr"] = lr
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError:
        valid = [p for p in inspect.signature(cls).parameters]
        raise ConfigError(f"optimizer {name!r} takes {', '.join(valid)}; got {', '.join(kwargs)}") from None
    return cls(**kwargs)
